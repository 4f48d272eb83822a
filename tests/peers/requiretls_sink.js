// A REQUIRETLS-capable SMTP sink (npm smtp-server), loopback only, for the
// client interop tests.  Adapted from the project's lab (node/sink.js).
// usage: NODE_PATH=.../node_modules node requiretls_sink.js PORT KEY CERT OUT.jsonl
// Each message -> one JSON line: from, to, tls, requireTLS, body (latin1).
'use strict';
const fs = require('fs');
const { SMTPServer } = require('smtp-server');
const [port, keyFile, certFile, outFile] = process.argv.slice(2);
const server = new SMTPServer({
    secure: false,
    key: fs.readFileSync(keyFile),
    cert: fs.readFileSync(certFile),
    hideREQUIRETLS: false, // announced only after STARTTLS
    authOptional: true,
    disabledCommands: ['AUTH'],
    banner: 'node smtp-server sink',
    logger: false,
    onData(stream, session, callback) {
        const chunks = [];
        stream.on('data', c => chunks.push(c));
        stream.on('end', () => {
            fs.appendFileSync(outFile, JSON.stringify({
                from: session.envelope.mailFrom && session.envelope.mailFrom.address,
                to: session.envelope.rcptTo.map(r => r.address),
                tls: !!session.secure,
                requireTLS: !!session.envelope.requireTLS,
                body: Buffer.concat(chunks).toString('latin1'),
            }) + '\n');
            callback(null, 'queued by sink');
        });
    },
});
server.on('error', e => { console.error(e); process.exit(1); });
server.listen(Number(port), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
