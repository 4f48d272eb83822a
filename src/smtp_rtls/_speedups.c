/* smtp_rtls._speedups: DATA content read in one pass (compiled build only).
 *
 * scan_data() below; first_bare(), the bare CR / LF search alone, is after it,
 * then find_crlf(), a command line's end, header_end(), a message's header
 * section's end, and command_line(), the server's read of a usual command
 * line.
 *
 * The pure-Python DataReader (src/smtp_rtls/_framing.py) reads a chunk of
 * DATA content with bytes methods: a split that unstuffs and rules out the
 * end marker, then the bare CR / LF check.  Each is fast, but there are
 * three passes over every octet.  scan_data() does the same work in one
 * pass, a line at a time with memchr, and gives the same answer for any
 * bytes: tests/test_framing_fast.py checks it against a reference written
 * octet by octet, and against the pure-Python path.
 *
 * The rules (RFC 5321):
 *   - only CR LF ends a line (§2.3.8), so only CR LF starts one;
 *   - a line that is exactly "." CR LF ends the content (§4.1.1.4): the
 *     content ends with the CR LF before it;
 *   - any other line that starts with "." loses that dot (§4.5.2);
 *   - a CR not followed by LF, or an LF not after CR, is bare (§2.3.8); its
 *     offset in the content given out (after unstuffing) is reported.
 * What may still begin the end marker is held back for the next read, as
 * the pure path does: "." or ".\r" at a line start, or a last CR.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* RFC 5321 §2.3.8: the first bare CR or LF of the line s[p..at], whose LF is
 * at s[at] (p <= at), or -1: a CR before at - 1, else the LF itself unless
 * the octet before it is its CR (crlf).  scan_data() and first_bare() both
 * ask it, a memchr for a CR within the line. */
static inline Py_ssize_t
bare_in_line(const char *s, Py_ssize_t p, Py_ssize_t at, int crlf)
{
    const char *cr = at > p ? memchr(s + p, '\r', (size_t)(at - p)) : NULL;
    if (cr != NULL && cr - s < at - 1) {
        return cr - s;
    }
    return crlf ? -1 : at;
}

PyDoc_STRVAR(scan_data_doc,
"scan_data(buf, start, head, line_start, find_bare, /)\n"
"--\n"
"\n"
"Read DATA content from buf[start:], after head (the octets held from the\n"
"read before, already known to be content: b\"\", b\"\\r\" or b\"\\r\\n\").\n"
"\n"
"line_start: buf[start] starts a line.  find_bare: look for a bare CR or LF\n"
"in buf[start:] (head is the caller's to check).\n"
"Returns (content, done, stop, keep, bare_at, line_start): head and the\n"
"unstuffed content; whether the end marker was found; the offset in buf\n"
"after what was used; how many octets before stop are held back (not in the\n"
"content); the offset in the content of the first bare CR or LF, or -1;\n"
"whether the next read starts a line.");

static PyObject *
scan_data(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "scan_data() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) > 2) {
        PyErr_SetString(PyExc_TypeError, "scan_data(): head must be bytes of at most 2 octets");
        return NULL;
    }
    const Py_ssize_t head = PyBytes_GET_SIZE(args[2]);
    int line_start = PyObject_IsTrue(args[3]);
    if (line_start < 0) {
        return NULL;
    }
    int find_bare = PyObject_IsTrue(args[4]);
    if (find_bare < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *s = (const char *)view.buf;
    const Py_ssize_t size = view.len;
    if (start < 0 || start > size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan_data(): start is outside the buffer");
        return NULL;
    }

    PyObject *out = NULL;   /* allocated at the first dot dropped, or for head */
    char *w = NULL;         /* where the next kept octets go in out */
    Py_ssize_t seg = start; /* first octet not copied to out yet */
    Py_ssize_t removed = 0; /* dots dropped so far */
    Py_ssize_t bare = -1;   /* offset in buf of the first bare CR or LF */
    Py_ssize_t p = start;   /* the scan position */
    Py_ssize_t content_stop, stop, keep = 0;
    int done = 0, ls = line_start;

    if (head) {
        out = PyBytes_FromStringAndSize(NULL, head + size - start);
        if (out == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
        w = PyBytes_AS_STRING(out);
        memcpy(w, PyBytes_AS_STRING(args[2]), (size_t)head);
        w += head;
    }

    for (;;) {
        if (ls) {
            const Py_ssize_t rem = size - p;
            if (rem >= 3 && s[p] == '.' && s[p + 1] == '\r' && s[p + 2] == '\n') {
                done = 1; /* the end marker: the content ends with the CRLF before */
                content_stop = p;
                stop = p + 3;
                break;
            }
            if (rem < 3 && (rem == 0 || (s[p] == '.' && (rem == 1 || s[p + 1] == '\r')))) {
                keep = rem; /* "" / "." / ".\r": may still become the end marker */
                content_stop = p;
                stop = size;
                break;
            }
            if (s[p] == '.') {
                /* §4.5.2: drop the dot */
                if (out == NULL) {
                    out = PyBytes_FromStringAndSize(NULL, size - start);
                    if (out == NULL) {
                        PyBuffer_Release(&view);
                        return NULL;
                    }
                    w = PyBytes_AS_STRING(out);
                }
                memcpy(w, s + seg, (size_t)(p - seg));
                w += p - seg;
                seg = ++p;
                removed++;
            }
        }
        const char *lf = memchr(s + p, '\n', (size_t)(size - p));
        if (lf == NULL) {
            /* the rest of the read has no line end; a last CR is held back,
               since its LF may come next */
            keep = (size > p && s[size - 1] == '\r') ? 1 : 0;
            content_stop = size - keep;
            stop = size;
            if (find_bare && bare < 0 && content_stop > p) {
                const char *cr = memchr(s + p, '\r', (size_t)(content_stop - p));
                if (cr != NULL) {
                    bare = (cr - s) - removed;
                }
            }
            break;
        }
        const Py_ssize_t at = lf - s;
        /* at > p - 1 >= start - 1; the LF ends a line only after a CR read here */
        ls = at > start && s[at - 1] == '\r';
        if (find_bare && bare < 0) {
            const Py_ssize_t b = bare_in_line(s, p, at, ls);
            if (b >= 0) {
                bare = b - removed;
            }
        }
        p = at + 1;
    }

    PyObject *content;
    if (out != NULL) {
        memcpy(w, s + seg, (size_t)(content_stop - seg));
        w += content_stop - seg;
        if (_PyBytes_Resize(&out, w - PyBytes_AS_STRING(out)) < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        content = out;
    } else if (start == 0 && content_stop == size && PyBytes_CheckExact(args[0])) {
        content = Py_NewRef(args[0]); /* the whole read: no copy */
    } else {
        content = PyBytes_FromStringAndSize(s + start, content_stop - start);
        if (content == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    if (content_stop > start) {
        line_start = content_stop - start >= 2 && s[content_stop - 2] == '\r'
                     && s[content_stop - 1] == '\n';
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(NNnnnN)", content, PyBool_FromLong(done), stop, keep,
                         bare < 0 ? (Py_ssize_t)-1 : bare - start + head,
                         PyBool_FromLong(line_start));
}

/* The arguments of first_bare() and find_crlf(): a buffer and an offset
 * into it, (buf, offset); the buffer's view is to be released by the
 * caller.  -1 with an exception set when they are not that. */
static int
buffer_and_offset(const char *name, PyObject *const *args, Py_ssize_t nargs,
                  Py_buffer *view, Py_ssize_t *offset)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", name, nargs);
        return -1;
    }
    *offset = PyLong_AsSsize_t(args[1]);
    if (*offset == -1 && PyErr_Occurred()) {
        return -1;
    }
    return PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE);
}

PyDoc_STRVAR(first_bare_doc,
"first_bare(buf, stop, /)\n"
"--\n"
"\n"
"The offset of the first bare CR or LF in buf[:stop], or -1: a CR not\n"
"followed by LF (a CR at stop - 1 included), or an LF not after a CR.");

/* The question has_bare_line_ending() (src/smtp_rtls/_framing.py) asks, for
 * the client's writers and the pure reader's path: a memchr for each line's
 * LF and one for a CR inside the line, where the pure path makes two
 * translate passes over every octet. */
static PyObject *
first_bare(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t stop;
    if (buffer_and_offset("first_bare", args, nargs, &view, &stop) < 0) {
        return NULL;
    }
    if (stop < 0 || stop > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "first_bare(): stop is outside the buffer");
        return NULL;
    }
    const char *s = (const char *)view.buf;
    Py_ssize_t bare = -1;
    Py_ssize_t p = 0; /* the start of the line looked at */
    while (p < stop) {
        const char *lf = memchr(s + p, '\n', (size_t)(stop - p));
        if (lf == NULL) {
            /* no line end left: any CR is bare, one at stop - 1 included */
            const char *cr = memchr(s + p, '\r', (size_t)(stop - p));
            bare = cr != NULL ? cr - s : -1;
            break;
        }
        const Py_ssize_t at = lf - s;
        /* (the octet before the LF may be the previous line's LF: not a CR) */
        bare = bare_in_line(s, p, at, at > 0 && s[at - 1] == '\r');
        if (bare >= 0) {
            break;
        }
        p = at + 1;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(bare);
}

PyDoc_STRVAR(find_crlf_doc,
"find_crlf(buf, start, /)\n"
"--\n"
"\n"
"buf.find(b\"\\r\\n\", start) for start >= 0: the offset of the first CR LF\n"
"at or after start, or -1.");

/* LineBuffer's search for a command line's end (RFC 5321 §2.3.8: CR LF
 * ends a line): what bytes.find(b"\r\n", start) answers, without its
 * argument parsing, which costs more than the search of a command line. */
static PyObject *
find_crlf(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start;
    if (buffer_and_offset("find_crlf", args, nargs, &view, &start) < 0) {
        return NULL;
    }
    if (start < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "find_crlf(): start is negative");
        return NULL;
    }
    const char *s = (const char *)view.buf;
    const Py_ssize_t n = view.len;
    Py_ssize_t found = -1;
    Py_ssize_t p = start;
    /* a CR at n - 1 has no LF after it: look at s[p..n - 2] */
    while (p < n - 1) {
        const char *cr = memchr(s + p, '\r', (size_t)(n - 1 - p));
        if (cr == NULL) {
            break;
        }
        const Py_ssize_t at = cr - s;
        if (s[at + 1] == '\n') {
            found = at;
            break;
        }
        p = at + 1;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

PyDoc_STRVAR(header_end_doc,
"header_end(buf, /)\n"
"--\n"
"\n"
"policy.tags.header_section_end(buf): the offset of the first line that is\n"
"neither a header field nor a continuation, or len(buf).");

static inline int
is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* The end of a line that starts at q: after its LF, or n without one. */
static inline Py_ssize_t
line_after(const unsigned char *s, Py_ssize_t q, Py_ssize_t n)
{
    const unsigned char *lf = memchr(s + q, '\n', (size_t)(n - q));
    return lf == NULL ? n : (lf - s) + 1;
}

/* RFC 5322 §2.1, §2.2: a message's header section is its fields, each a
 * name of printable ASCII but ":" (%d33-57 / %d59-126), optional WSP
 * (obs-optional, §4.5.8), ":" and the rest of the line, with any folded
 * continuation lines (a line that starts with WSP, §2.2.3).  It ends at the
 * first line that is neither.  The same language as policy.tags'
 * _HEADER_FIELDS pattern, whose possessive runs never give characters back:
 * so a line at a time, no backtracking, a memchr per line; the session
 * finds where a message's header ends with it (RFC 8689 §4.1: the
 * TLS-Required field is looked for there), and a test holds the two to one
 * answer. */
static PyObject *
header_end(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "header_end() takes 1 argument (%zd given)", nargs);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)view.buf;
    const Py_ssize_t n = view.len;
    Py_ssize_t p = 0; /* the end of the fields so far */
    while (p < n) {
        Py_ssize_t q = p;
        while (q < n && s[q] >= 0x21 && s[q] <= 0x7e && s[q] != ':') {
            q++;
        }
        if (q == p) {
            break; /* no field name: the empty line, WSP, or body text */
        }
        while (q < n && is_wsp(s[q])) {
            q++;
        }
        if (q == n || s[q] != ':') {
            break;
        }
        q = line_after(s, q + 1, n);
        while (q < n && is_wsp(s[q])) {
            q = line_after(s, q, n);
        }
        p = q;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(p);
}

PyDoc_STRVAR(command_line_doc,
"command_line(raw, /)\n"
"--\n"
"\n"
"read_command_line's answer for a line of printable ASCII (every octet\n"
"%d32-126): (its verb upper-cased, the line, len(raw) + 2, the argument\n"
"after the first space); None for any other line, which the Python path\n"
"reads.");

/* The usual command line, read in one pass: the check that it holds no
 * control character (RFC 5321 §4.1.2 admits none; its octets are all
 * %d32-126 here, so none is one), the decode, and the split at the first
 * space, where the Python path makes a decode, an isprintable pass, a
 * partition and an upper, each a call.  Any octet outside %d32-126 (a
 * control character, DEL, UTF-8) gives None: read_command_line then reads
 * the line as before, and decides it. */
static PyObject *
command_line(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "command_line() takes 1 argument (%zd given)", nargs);
        return NULL;
    }
    PyObject *raw = args[0];
    if (!PyBytes_CheckExact(raw)) {
        PyErr_SetString(PyExc_TypeError, "command_line() takes bytes");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(raw);
    const Py_ssize_t n = PyBytes_GET_SIZE(raw);
    Py_ssize_t space = -1;
    int lower = 0; /* a lower-case letter in the verb */
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char c = s[i];
        if (c < 0x20 || c > 0x7e) {
            Py_RETURN_NONE;
        }
        if (space < 0) {
            if (c == ' ') {
                space = i;
            }
            else if (c >= 'a' && c <= 'z') {
                lower = 1;
            }
        }
    }
    const Py_ssize_t verb_len = space < 0 ? n : space;
    PyObject *line = PyUnicode_New(n, 127);
    if (line == NULL) {
        return NULL;
    }
    memcpy(PyUnicode_1BYTE_DATA(line), s, (size_t)n);
    PyObject *verb;
    if (space < 0 && !lower) {
        /* "DATA", "QUIT": the verb is the line */
        Py_INCREF(line);
        verb = line;
    }
    else {
        verb = PyUnicode_New(verb_len, 127);
        if (verb == NULL) {
            Py_DECREF(line);
            return NULL;
        }
        Py_UCS1 *v = PyUnicode_1BYTE_DATA(verb);
        for (Py_ssize_t i = 0; i < verb_len; i++) {
            const unsigned char c = s[i];
            v[i] = (c >= 'a' && c <= 'z') ? (Py_UCS1)(c - ('a' - 'A')) : c;
        }
    }
    const Py_ssize_t arg_len = space < 0 ? 0 : n - space - 1;
    PyObject *arg = PyUnicode_New(arg_len, 127);
    if (arg == NULL) {
        Py_DECREF(line);
        Py_DECREF(verb);
        return NULL;
    }
    if (arg_len > 0) {
        memcpy(PyUnicode_1BYTE_DATA(arg), s + space + 1, (size_t)arg_len);
    }
    PyObject *size = PyLong_FromSsize_t(n + 2);
    if (size == NULL) {
        Py_DECREF(line);
        Py_DECREF(verb);
        Py_DECREF(arg);
        return NULL;
    }
    PyObject *out = PyTuple_New(4);
    if (out == NULL) {
        Py_DECREF(line);
        Py_DECREF(verb);
        Py_DECREF(arg);
        Py_DECREF(size);
        return NULL;
    }
    /* (PyTuple_SET_ITEM steals each reference) */
    PyTuple_SET_ITEM(out, 0, verb);
    PyTuple_SET_ITEM(out, 1, line);
    PyTuple_SET_ITEM(out, 2, size);
    PyTuple_SET_ITEM(out, 3, arg);
    return out;
}

static PyMethodDef speedups_methods[] = {
    {"scan_data", (PyCFunction)(void (*)(void))scan_data, METH_FASTCALL, scan_data_doc},
    {"first_bare", (PyCFunction)(void (*)(void))first_bare, METH_FASTCALL, first_bare_doc},
    {"find_crlf", (PyCFunction)(void (*)(void))find_crlf, METH_FASTCALL, find_crlf_doc},
    {"command_line", (PyCFunction)(void (*)(void))command_line, METH_FASTCALL, command_line_doc},
    {"header_end", (PyCFunction)(void (*)(void))header_end, METH_FASTCALL, header_end_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "smtp_rtls._speedups",
    .m_doc = "The server's per-line and per-message scans, in C (the compiled build only).",
    .m_size = 0,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
