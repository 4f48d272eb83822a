// A REQUIRETLS-capable SMTP client (npm nodemailer) for the interop tests; loopback only.
// usage: node requiretls_send.js PORT CAFILE SERVERNAME TO [requiretls 1|0]
// Prints one JSON line: {ok, response, envelope} or {ok: false, code, message}.
'use strict';
const fs = require('fs');
const nodemailer = require('nodemailer');
const [port, caFile, servername, to, requiretls = '1'] = process.argv.slice(2);
const transport = nodemailer.createTransport({
    host: '127.0.0.1', port: Number(port), secure: false, requireTLS: true,
    name: 'node-client.test', connectionTimeout: 10000, socketTimeout: 10000,
    tls: { ca: fs.readFileSync(caFile), servername },
});
transport.sendMail({
    from: 'node@client.test', to, subject: 'nodemailer interop', text: 'hello\n.dot line\n',
    requireTLSExtensionEnabled: requiretls === '1',
}).then(
    info => { console.log(JSON.stringify({ ok: true, response: info.response, envelope: info.envelope })); },
    err => { console.log(JSON.stringify({ ok: false, code: err.code, message: err.message })); process.exitCode = 1; },
);
