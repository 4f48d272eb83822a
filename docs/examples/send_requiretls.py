"""Submit one message with REQUIRETLS: STARTTLS, AUTH, MAIL FROM ... REQUIRETLS.

Run:  python send_requiretls.py HOST PORT CAFILE USER PASSWORD
(CAFILE: the certificate authority that signed the server's certificate.)
"""

import ssl
import sys

from smtp_rtls.io import sync

host, port, cafile, user, password = sys.argv[1:6]
context = ssl.create_default_context(cafile=cafile)

with sync.connect(host, int(port), local_hostname="client.example", timeout=30) as client:
    client.starttls(context)  # verifies the certificate and the name, then EHLO again
    print("TLS:", client.conn.tls.version if client.conn.tls else None)
    print("AUTH:", client.login(user, password).code)
    result = client.send(
        "alice@example.org",
        ["bob@example.net"],
        b"Subject: sent with REQUIRETLS\r\n\r\nEvery hop must use verified TLS.\r\n",
        requiretls=True,  # refused by the core unless TLS is up and REQUIRETLS offered
    )
    print("accepted:", *(str(r.forward_path) for r in result.accepted))
    client.quit()
