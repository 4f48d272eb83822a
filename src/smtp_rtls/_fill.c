/* smtp_rtls._fill: objects of slotted classes made in one call (compiled
 * build only).
 *
 * The core makes an object per command and per reply (events, replies,
 * views, results), of frozen attrs classes with __slots__, from fields it
 * has checked already.  Their __init__ would check them again, so they are
 * made without it: allocated, then each slot filled.  Filling a slot
 * through its own __set__ is, from compiled code, a call that CPython 3.11
 * makes by packing the arguments into a tuple: with six fields, seven calls
 * and seven tuples per object.
 *
 * Filler(cls, names) makes it in one call: filler(v1, ..., vn) is an
 * object of cls whose slot names[i] holds vi, allocated as object.__new__
 * does (cls->tp_alloc), every other slot left unset.  The offsets of the
 * slots are looked up once, when the Filler is made, from the member
 * descriptors __slots__ creates; anything else (a property, a read-only
 * member, a slot of an unrelated class) is refused then, so a call can only
 * store object references where the class keeps them.
 *
 * The pure build, and this one when the module is missing, use a Python
 * function that makes the same calls (smtp_rtls._slots.slot_filler);
 * tests/test_fill.py checks the two against each other and against the
 * classes' own constructors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stddef.h>

#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif
#ifndef Py_READONLY
#define Py_READONLY READONLY
#endif

typedef struct {
    PyObject_VAR_HEAD
    PyTypeObject *cls;
    vectorcallfunc vectorcall;
    Py_ssize_t offsets[1]; /* ob_size of them */
} FillerObject;

static PyObject *
filler_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FillerObject *filler = (FillerObject *)self;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_Format(PyExc_TypeError, "a filler of %s takes no keyword arguments",
                     filler->cls->tp_name);
        return NULL;
    }
    if (n != Py_SIZE(filler)) {
        PyErr_Format(PyExc_TypeError, "a filler of %s takes %zd arguments (%zd given)",
                     filler->cls->tp_name, Py_SIZE(filler), n);
        return NULL;
    }
    if (filler->cls == NULL) { /* cleared by the garbage collector */
        PyErr_SetString(PyExc_TypeError, "a cleared filler makes nothing");
        return NULL;
    }
    PyObject *obj = filler->cls->tp_alloc(filler->cls, 0);
    if (obj == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject **slot = (PyObject **)((char *)obj + filler->offsets[i]);
        /* a fresh object: every slot is NULL, nothing to release */
        Py_INCREF(args[i]);
        *slot = args[i];
    }
    return obj;
}

/* The offset of cls's slot `name`, or -1 with an exception set. */
static Py_ssize_t
slot_offset(PyTypeObject *cls, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "slot names are str, not %.100s", Py_TYPE(name)->tp_name);
        return -1;
    }
    PyObject *descr = PyObject_GetAttr((PyObject *)cls, name);
    if (descr == NULL) {
        return -1;
    }
    Py_ssize_t offset = -1;
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", cls->tp_name, name);
    }
    else {
        PyMemberDescrObject *member = (PyMemberDescrObject *)descr;
        PyMemberDef *def = member->d_member;
        if (def->type != Py_T_OBJECT_EX || (def->flags & Py_READONLY)) {
            PyErr_Format(PyExc_TypeError, "%s.%U is not a writable slot", cls->tp_name, name);
        }
        else if (!PyType_IsSubtype(cls, PyDescr_TYPE(descr))) {
            /* a descriptor of another class, stored on this one */
            PyErr_Format(PyExc_TypeError, "%s.%U is not a slot of %s", cls->tp_name, name,
                         cls->tp_name);
        }
        else {
            offset = def->offset;
        }
    }
    Py_DECREF(descr);
    return offset;
}

static PyObject *
filler_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *cls;
    PyObject *names;
    static char *keywords[] = {"cls", "names", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!:Filler", keywords, &PyType_Type, &cls,
                                     &PyTuple_Type, &names)) {
        return NULL;
    }
    PyTypeObject *target = (PyTypeObject *)cls;
    if (target->tp_itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%s has items of variable size", target->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    FillerObject *filler = PyObject_GC_NewVar(FillerObject, type, n);
    if (filler == NULL) {
        return NULL;
    }
    filler->cls = NULL;
    filler->vectorcall = filler_vectorcall;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t offset = slot_offset(target, PyTuple_GET_ITEM(names, i));
        if (offset < 0) {
            Py_DECREF(filler);
            return NULL;
        }
        for (Py_ssize_t j = 0; j < i; j++) {
            if (filler->offsets[j] == offset) {
                PyErr_Format(PyExc_ValueError, "slot %R named twice", PyTuple_GET_ITEM(names, i));
                Py_DECREF(filler);
                return NULL;
            }
        }
        filler->offsets[i] = offset;
    }
    Py_INCREF(cls);
    filler->cls = target;
    PyObject_GC_Track(filler);
    return (PyObject *)filler;
}

static int
filler_traverse(FillerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    return 0;
}

static int
filler_clear(FillerObject *self)
{
    Py_CLEAR(self->cls);
    return 0;
}

static void
filler_dealloc(FillerObject *self)
{
    PyObject_GC_UnTrack(self);
    filler_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
filler_repr(FillerObject *self)
{
    if (self->cls == NULL) {
        return PyUnicode_FromString("<Filler, cleared>");
    }
    return PyUnicode_FromFormat("<Filler of %s, %zd slots>", self->cls->tp_name, Py_SIZE(self));
}

static PyObject *
filler_get_cls(FillerObject *self, void *closure)
{
    if (self->cls == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(self->cls);
    return (PyObject *)self->cls;
}

static PyGetSetDef filler_getset[] = {
    {"cls", (getter)filler_get_cls, NULL, "The class whose objects this makes.", NULL},
    {NULL},
};

PyDoc_STRVAR(filler_doc,
"Filler(cls, names)\n"
"--\n"
"\n"
"A callable: filler(*values) is an object of cls with slot names[i] set to\n"
"values[i], made without cls.__init__ (as object.__new__ and the slots'\n"
"__set__ would make it).");

static PyTypeObject FillerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "smtp_rtls._fill.Filler",
    .tp_basicsize = offsetof(FillerObject, offsets),
    .tp_itemsize = sizeof(Py_ssize_t),
    .tp_dealloc = (destructor)filler_dealloc,
    .tp_vectorcall_offset = offsetof(FillerObject, vectorcall),
    .tp_repr = (reprfunc)filler_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = filler_doc,
    .tp_traverse = (traverseproc)filler_traverse,
    .tp_clear = (inquiry)filler_clear,
    .tp_getset = filler_getset,
    .tp_new = filler_new,
};

static int
fill_exec(PyObject *module)
{
    if (PyType_Ready(&FillerType) < 0) {
        return -1;
    }
    Py_INCREF(&FillerType);
    if (PyModule_AddObject(module, "Filler", (PyObject *)&FillerType) < 0) {
        Py_DECREF(&FillerType);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot fill_slots[] = {
    {Py_mod_exec, fill_exec},
    {0, NULL},
};

static struct PyModuleDef fill_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "smtp_rtls._fill",
    .m_doc = "Objects of slotted classes made in one call (compiled build only).",
    .m_size = 0,
    .m_slots = fill_slots,
};

PyMODINIT_FUNC
PyInit__fill(void)
{
    return PyModuleDef_Init(&fill_module);
}
