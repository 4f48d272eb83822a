"""``smtp-rtls check DOMAIN``: could a REQUIRETLS message be delivered to DOMAIN now?

The report is built on the delivery policy itself, so its answer is the one a
delivery would reach: :func:`~smtp_rtls.policy.plan.plan_delivery` for a
message tagged REQUIRETLS says which MX hosts are candidates and what each
must prove; the probe then runs, for each candidate, the session a delivery
would run up to MAIL FROM (greeting, EHLO, STARTTLS with the candidate's
:class:`~smtp_rtls.policy.plan.Handshake`, EHLO again) and hands what it saw
to :func:`~smtp_rtls.policy.verdict.check`.  No message is ever sent: the
probe says QUIT where a delivery would say MAIL FROM.  With no candidate left,
:func:`~smtp_rtls.policy.verdict.final_verdict` says FAIL (exit 1) or DEFER
(exit 75), as a delivery would.

Around the decision the report shows what it rests on, for an operator: the
MX answer and its DNSSEC status, the MTA-STS record and policy, each host's
addresses and TLSA records.  Those extra look-ups are for display only; they
never change the verdict.  The report is one JSON-ready dict, from which the
text table is drawn, so the two outputs cannot disagree.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any

import dns.exception
import dns.message
import dns.query

from .._errors import ProtocolError
from .._events import StartTLS as StartTLSCommand
from .._tls import TLSInfo
from ..io.fulfil import SyncFulfiller
from ..io.sync import Client, connect
from ..io.tls import client_context, tls_failure, tls_info
from ..policy.codes import code_for
from ..policy.dane import TLSAResult, dane_verify, lookup_tlsa
from ..policy.mtasts import STSOutcome
from ..policy.mx import AddressResult, resolve_addresses
from ..policy.plan import (
    Action,
    Candidate,
    DeliveryPlan,
    Handshake,
    PolicyConfig,
    Security,
    Verdict,
    plan_delivery,
)
from ..policy.requests import Request, Result, run_lookup
from ..policy.tags import TLSTag
from ..policy.verdict import check, connection_failed, final_verdict, handshake_failed
from ._common import (
    EX_NOINPUT,
    EX_OK,
    EX_TEMPFAIL,
    CommandError,
    Progress,
    env_default,
    host_port,
    port_number,
)

__all__ = ["add_parser", "run"]

#: The exit statuses of ``check``: ready, not ready, not known now.
READY, NOT_READY, UNKNOWN = EX_OK, 1, EX_TEMPFAIL

#: Seconds for each DNS query and for each step of a probe (connect, a
#: reply, the handshake).  A check is interactive: RFC 5321 §4.5.3.2's
#: minutes would make an unanswering MX look like a hung command.
DNS_TIMEOUT = 5.0
PROBE_TIMEOUT = 20.0

# RFC 1035 §2.3.1 / RFC 5321 §4.1.2 "Domain": letters, digits, hyphens.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def add_parser(sub: Any) -> None:
    """Register ``check``."""
    parser = sub.add_parser(
        "check",
        help="is DOMAIN ready to receive REQUIRETLS mail? (MX, DNSSEC, MTA-STS, DANE, probe)",
        description=(
            "Report whether a message sent with REQUIRETLS (RFC 8689) could be delivered "
            "to DOMAIN now, and why: MX hosts, DNSSEC, MTA-STS, TLSA records, and a live "
            "probe of each candidate MX (no message is sent).  Exit 0: ready; 1: not "
            "ready; 75: not known now (DNS or network trouble)."
        ),
    )
    parser.add_argument("domain", metavar="DOMAIN", help="the recipient domain")
    parser.add_argument(
        "--nameserver",
        metavar="HOST:PORT",
        default=env_default("NAMESERVER", "127.0.0.1:53"),
        help="the recursive resolver to ask (default: $SMTP_RTLS_NAMESERVER or 127.0.0.1:53)",
    )
    parser.add_argument(
        "--trust-ad",
        action="store_true",
        help="trust the resolver's AD bit (a validating resolver on this host or on a "
        "protected path); without it nothing counts as DNSSEC-secure",
    )
    parser.add_argument(
        "--cafile",
        metavar="FILE",
        default=env_default("CAFILE"),
        help="PKIX trust store for MX certificates and the MTA-STS host "
        "(default: $SMTP_RTLS_CAFILE or the system's)",
    )
    parser.add_argument(
        "--mx-port",
        type=port_number,
        default=25,
        metavar="N",
        help="TCP port of the MX probes (default 25; names and TLSA look-ups unchanged)",
    )
    parser.add_argument(
        "--mta-sts-port",
        type=port_number,
        default=443,
        metavar="N",
        help="TCP port of the MTA-STS policy host (default 443; names unchanged)",
    )
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="do not connect to the MX hosts; decide from DNS and MTA-STS only",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the domain, print the report, return 0, 1 or 75."""
    domain = _domain(args.domain)
    nameserver = _nameserver(args.nameserver)
    cafile = _cafile(args.cafile)
    _preflight(nameserver, domain)
    fulfil = SyncFulfiller(
        [nameserver[0]],
        port=nameserver[1],
        trusted=args.trust_ad,
        timeout=DNS_TIMEOUT,
        https_port=args.mta_sts_port,
        cafile=cafile,
    )
    # The TLSA port stays 25 whatever --mx-port says: the records a delivery
    # would use are those of port 25 (RFC 7672 §2.2.3).
    plan = run_lookup(plan_delivery(domain, TLSTag.REQUIRETLS, config=PolicyConfig()), fulfil)
    report = _report(plan, fulfil, args, nameserver)
    if args.no_probe:
        status = _decide_unprobed(plan, report)
    else:
        local = socket.getfqdn() or "localhost"
        status = _decide_probed(plan, report, args.mx_port, cafile, local)
    report["exit_status"] = status
    report["ready"] = status == READY
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_text(report))
    return status


# -- arguments -------------------------------------------------------------------------


def _domain(text: str) -> str:
    """The domain in ASCII (IDNA), or a CommandError that says what is wrong."""
    name = text.strip().rstrip(".").lower()
    if "@" in name:
        raise CommandError(f"{text!r} is a mail address; give its domain (after the @)")
    if name.startswith("[") or _is_address(name):
        raise CommandError(f"{text!r} is an address, not a domain: MX records need a domain")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise CommandError(f"not a valid domain name: {text!r}") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise CommandError(f"not a valid domain name: {text!r}")
    return ascii_name


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _nameserver(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as an address dnspython can use (a name is looked up once)."""
    try:
        host, port = host_port(53)(text)
    except argparse.ArgumentTypeError as exc:
        raise CommandError(f"--nameserver: {exc}") from None
    if _is_address(host):
        return host, port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise CommandError(f"--nameserver: cannot resolve {host!r}: {exc}") from None
    return str(infos[0][4][0]), port


def _cafile(path: str | None) -> str | None:
    if path is None:
        return None
    if not os.path.isfile(path):
        raise CommandError(f"--cafile: no such file: {path}", EX_NOINPUT)
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise CommandError(f"--cafile: not a PEM certificate file: {path} ({exc})") from None
    return path


def _preflight(nameserver: tuple[str, int], domain: str) -> None:
    """Fail clearly when the resolver does not answer at all.

    The fulfiller reports an unreachable resolver as SERVFAIL or TIMEOUT,
    the same as a bogus zone; only a direct question tells "nobody answers"
    from "the answer is a failure".  Any response, even REFUSED, will do.
    """
    host, port = nameserver
    query = dns.message.make_query(domain, "MX", want_dnssec=True)
    try:
        dns.query.udp(query, host, port=port, timeout=DNS_TIMEOUT)
    except (dns.exception.DNSException, OSError) as exc:
        why = "no answer" if isinstance(exc, dns.exception.Timeout) else str(exc) or "failed"
        where = _host_port(host, port)
        raise CommandError(f"nameserver {where} unreachable: {why}", EX_TEMPFAIL) from None


# -- what the plan rests on ------------------------------------------------------------


def _report(
    plan: DeliveryPlan,
    fulfil: Callable[[Request], Result],
    args: argparse.Namespace,
    nameserver: tuple[str, int],
) -> dict[str, Any]:
    """The report of ``plan``, with the display-only look-ups of each MX host."""
    planned = {c.host: c for c in plan.candidates}
    skipped = {v.host: v for v in plan.skipped if v.host is not None}
    hosts = []
    for mx_host in plan.mx.hosts:
        addresses = run_lookup(resolve_addresses(mx_host.name), fulfil)
        base = addresses.tlsa_bases[0] if addresses.tlsa_bases else mx_host.name
        tlsa = run_lookup(lookup_tlsa(base), fulfil)
        candidate = planned.get(mx_host.name)
        hosts.append(
            {
                "name": mx_host.name,
                "preference": mx_host.preference,
                "addresses": list(addresses.addresses),
                "addresses_dnssec": addresses.dnssec,
                "addresses_error": addresses.reason if not addresses.addresses else "",
                "tlsa": _tlsa(tlsa, plan.mx.dnssec, addresses),
                "candidate": None if candidate is None else _candidate(candidate),
                "skipped": None
                if mx_host.name not in skipped
                else _verdict(skipped[mx_host.name]),
                "probe": None,
            }
        )
    return {
        "domain": plan.domain,
        "ready": False,
        "exit_status": None,
        "resolver": {"nameserver": _host_port(*nameserver), "trust_ad": bool(args.trust_ad)},
        "mx": {
            "dnssec": plan.mx.dnssec,
            "implicit": plan.mx.implicit,
            "null_mx": plan.mx.null_mx,
            "temporary_failure": plan.mx.temporary_failure,
            "error": plan.mx.reason,
        },
        "mta_sts": _sts(plan.sts),
        "hosts": hosts,
        "probed": not args.no_probe,
        "verdict": None,
    }


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sts(sts: STSOutcome | None) -> dict[str, Any]:
    if sts is None:  # the MX look-up already decided (null MX, DNS failure)
        return {
            "record": None,
            "policy": None,
            "error": "not looked up",
            "temporary_failure": False,
            "validates_mx": False,
        }
    policy = sts.policy
    return {
        "record": None if sts.record is None else {"id": sts.record.id},
        "policy": None
        if policy is None
        else {
            "mode": policy.mode,
            "mx": list(policy.mx),
            "max_age": policy.max_age,
            "id": policy.policy_id,
        },
        "error": sts.error,
        "temporary_failure": sts.temporary_failure,
        # RFC 8689 §4.2.1 step 2: only "enforce" validates MX host names.
        "validates_mx": policy is not None and policy.mode == "enforce",
    }


def _tlsa(tlsa: TLSAResult, mx_secure: bool, addresses: AddressResult) -> dict[str, Any]:
    """The TLSA set of a host and what it means for DANE (RFC 7672 §2.2)."""
    if tlsa.temporary_failure:
        state = "failed"
    elif not tlsa.records:
        state = "none"
    elif not tlsa.dnssec:
        state = "insecure"
    elif not (mx_secure and addresses.dnssec):
        # RFC 7672 §2.2.1-2: secure records under an insecure MX or insecure
        # addresses do not count.
        state = "ignored"
    else:
        state = "usable" if tlsa.authentication_required else "unusable"
    return {
        "name": f"_25._tcp.{tlsa.host}",
        "dnssec": tlsa.dnssec,
        "status": state,
        "records": [
            {"record": str(r), "usable": r.usable and state == "usable"} for r in tlsa.records
        ],
        "detail": tlsa.reason,
    }


def _candidate(candidate: Candidate) -> dict[str, Any]:
    return {
        "security": candidate.security.value,
        "names": list(candidate.names),
        "requiretls": candidate.requiretls.value,
        "tls_1_2_or_newer": candidate.strong_tls,
        "why": candidate.why,
    }


def _verdict(verdict: Verdict, *, final: bool = False) -> dict[str, Any]:
    """A verdict as JSON.  A host's failure shows the code it ends in when no
    host is left (5.7.30, not the 4.7.30 of "try the next host")."""
    status = None
    if verdict.reason is not None:
        code = code_for(verdict.reason)
        if final and verdict.reply is not None and verdict.reply.enhanced is not None:
            status = str(verdict.reply.enhanced)
        else:
            status = str(code.status)
    return {
        "action": verdict.action.value,
        "host": verdict.host,
        "reason": None if verdict.reason is None else verdict.reason.value,
        "status": status,
        "requiretls": verdict.requiretls,
        "detail": verdict.detail,
    }


# -- the decision ----------------------------------------------------------------------


def _final(plan: DeliveryPlan, attempts: Sequence[Verdict], report: dict[str, Any]) -> int:
    verdict = final_verdict(plan, attempts)
    report["verdict"] = _verdict(verdict, final=True)
    return NOT_READY if verdict.action is Action.FAIL else UNKNOWN


def _decide_unprobed(plan: DeliveryPlan, report: dict[str, Any]) -> int:
    """Without probes: ready when a candidate's security can carry REQUIRETLS.

    Under RFC 8689 §4.2.1 every candidate of a REQUIRETLS plan already has a
    validated name and must authenticate by DANE or PKIX; what is left
    unknown is only the server itself (certificate, REQUIRETLS offered).
    """
    if any(c.security in (Security.DANE, Security.PKIX) for c in plan.candidates):
        report["verdict"] = None
        return READY
    if plan.candidates:  # pragma: no cover - strict plans have no weaker candidates
        return NOT_READY
    return _final(plan, (), report)


def _decide_probed(
    plan: DeliveryPlan, report: dict[str, Any], port: int, cafile: str | None, local: str
) -> int:
    """Probe every candidate; the first that passes is where a delivery would go.

    A delivery stops at the first host that passes; the check probes them
    all so that the operator sees every MX, but decides as the delivery would.
    """
    by_name = {h["name"]: h for h in report["hosts"]}
    attempts: list[Verdict] = []
    chosen: Verdict | None = None
    progress = Progress()
    for n, candidate in enumerate(plan.candidates, 1):
        progress.show(f"probing {candidate.host} ({n} of {len(plan.candidates)})")
        verdict, probe = _probe(candidate, port, cafile, local)
        by_name[candidate.host]["probe"] = probe
        if verdict.action is Action.PROCEED:
            chosen = chosen or verdict
        elif chosen is None:
            attempts.append(verdict)
    progress.done()
    if chosen is not None:
        report["verdict"] = _verdict(chosen)
        return READY
    return _final(plan, attempts, report)


# -- the probe -------------------------------------------------------------------------


class _Unreachable(Exception):
    """This address gave no session to judge: try the candidate's next one."""


def _probe(
    candidate: Candidate, port: int, cafile: str | None, local: str
) -> tuple[Verdict, dict[str, Any]]:
    """Run a delivery's session with ``candidate`` up to MAIL FROM, then QUIT."""
    errors: list[str] = []
    for address in candidate.addresses:
        probe: dict[str, Any] = {
            "address": address,
            "port": port,
            "unreachable": errors,
            "starttls_offered": None,
            "tls": None,
            "authentication": None,
            "requiretls_offered": None,
            "verdict": None,
        }
        try:
            verdict = _session(candidate, address, port, cafile, local, probe)
        except _Unreachable as exc:
            errors.append(f"{_host_port(address, port)}: {exc}")
            continue
        probe["verdict"] = _verdict(verdict)
        return verdict, probe
    verdict = connection_failed(candidate, "; ".join(errors) or "no address")
    return verdict, {
        "address": None,
        "port": port,
        "unreachable": errors,
        "starttls_offered": None,
        "tls": None,
        "authentication": None,
        "requiretls_offered": None,
        "verdict": _verdict(verdict),
    }


def _session(
    candidate: Candidate,
    address: str,
    port: int,
    cafile: str | None,
    local: str,
    probe: dict[str, Any],
) -> Verdict:
    """One session, as :class:`~smtp_rtls.session.Delivery` runs it; fills ``probe``."""
    hs = candidate.handshake
    try:
        # The TCP connection goes to the address (and --mx-port); SNI and the
        # name checks use the handshake's server_name, as in a delivery.
        client = connect(
            address,
            port,
            local_hostname=local,
            server_hostname=hs.server_name,
            timeout=PROBE_TIMEOUT,
        )
    except (OSError, ConnectionError, ProtocolError) as exc:
        raise _Unreachable(_why(exc)) from None
    try:
        caps = client.conn.capabilities
        if caps is None:
            raise _Unreachable("EHLO refused")
        probe["starttls_offered"] = "STARTTLS" in caps
        tls: TLSInfo | None = None
        if "STARTTLS" in caps:
            reply = client.command(StartTLSCommand())
            # RFC 3207 §4: a refusal (454) leaves a plaintext session; check() decides.
            if reply.code == 220:
                try:
                    tls = _handshake(client, hs, cafile)
                except OSError as exc:  # ssl.SSLError, a timeout, a reset
                    failed = tls_failure(exc)
                    probe["authentication"] = _auth(candidate, None, failed.detail)
                    # As a delivery: the TLS layer is broken, closing is the QUIT.
                    client.close()
                    return handshake_failed(candidate, failed.kind, failed.detail)
                # RFC 3207 §4.2: forget what was learned; EHLO again.
                client.ehlo()
                caps = client.conn.capabilities
        if tls is not None:
            probe["tls"] = {"version": tls.version, "cipher": tls.cipher, "bits": tls.bits}
            probe["authentication"] = _auth(candidate, tls, "")
            probe["requiretls_offered"] = caps is not None and "REQUIRETLS" in caps
        verdict = check(candidate, tls, caps)
        client.quit()  # RFC 8689 §4.2.1 ¶3 on failure; no message to send on success
        return verdict
    except (OSError, ConnectionError, ProtocolError) as exc:
        client.close()
        raise _Unreachable(_why(exc)) from None
    except _Unreachable:
        client.quit()
        raise


def _handshake(client: Client, hs: Handshake, cafile: str | None) -> TLSInfo:
    """The TLS handshake ``hs`` asks for, on the client's socket.

    Done here rather than by :meth:`~smtp_rtls.io.sync.Client.starttls` so
    that a failed handshake is told apart from a broken post-TLS EHLO (the
    first is a verdict on the host, the second an unreachable address).
    """
    client.sock.settimeout(PROBE_TIMEOUT)
    client.sock = client_context(hs, cafile).wrap_socket(
        client.sock, server_hostname=hs.server_name
    )
    info = tls_info(client.sock, hs.server_name if hs.verify else None)
    client.conn.start_tls(info)
    return info


def _auth(candidate: Candidate, tls: TLSInfo | None, failure: str) -> dict[str, Any]:
    """The certificate check of the rule that applies to ``candidate``, for display.

    The verdict is check()'s; this says which rule was applied and its own
    outcome (DANE is re-run here only to name the record that matched).
    """
    rule = candidate.security.value
    if candidate.security is Security.DANE:
        if tls is None:
            return {"rule": rule, "ok": False, "detail": failure}
        outcome = dane_verify(candidate.tlsa, tls.peer_chain, candidate.names)
        matched = f"matched {outcome.matched}" if outcome.matched is not None else ""
        return {"rule": rule, "ok": outcome.ok, "detail": outcome.reason or matched}
    if candidate.security is Security.PKIX:
        if tls is None:
            return {"rule": rule, "ok": False, "detail": failure}
        return {
            "rule": rule,
            "ok": tls.verified_name is not None,
            "detail": f"chain trusted, names {tls.verified_name}",
        }
    return {"rule": "none", "ok": None, "detail": "not authenticated (not RFC 8689)"}


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- the text report -------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Rows as aligned columns (the first row is the heading)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines) + "\n"


def _yes(value: object) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _text(report: dict[str, Any]) -> str:
    """The report for people: a headline, then one section per mechanism."""
    status = report["exit_status"]
    headline = {READY: "READY", NOT_READY: "NOT READY"}.get(status, "UNKNOWN (try again later)")
    out = [f"REQUIRETLS readiness of {report['domain']}: {headline} (exit {status})\n"]
    verdict = report["verdict"]
    if verdict is not None:
        code = f"{verdict['status']} " if verdict["status"] else ""
        text = verdict["reason"] or f"deliverable with REQUIRETLS via {verdict['host']}"
        if verdict["action"] == "proceed":
            out.append(f"  {text}\n")
        else:
            out.append(f"  {verdict['action']}: {code}{text}: {verdict['detail']}\n")
    elif report["ready"]:
        out.append("  the plan has candidates that must authenticate (not probed)\n")

    resolver = report["resolver"]
    trust = "trusted" if resolver["trust_ad"] else "NOT trusted (use --trust-ad)"
    out.append(f"\nResolver  {resolver['nameserver']}, AD bit {trust}\n")
    mx = report["mx"]
    if mx["null_mx"] or mx["temporary_failure"] or not report["hosts"]:
        out.append(f"MX        {mx['error'] or 'no hosts'}\n")
    else:
        kind = "implicit (A/AAAA of the domain)" if mx["implicit"] else "records"
        secure = "DNSSEC secure" if mx["dnssec"] else "not DNSSEC-secure"
        out.append(f"MX        {kind}, {secure}\n")
        rows = [["PREF", "HOST", "ADDRESSES", "DNSSEC"]]
        for host in report["hosts"]:
            addresses = ", ".join(host["addresses"]) or host["addresses_error"] or "-"
            rows.append(
                [str(host["preference"]), host["name"], addresses, _yes(host["addresses_dnssec"])]
            )
        out.append(_table(rows))

    sts = report["mta_sts"]
    record = f"TXT id={sts['record']['id']}" if sts["record"] else "no TXT record"
    policy = sts["policy"]
    if policy is not None:
        listed = " ".join(policy["mx"])
        out.append(f"MTA-STS   {record}; mode {policy['mode']}, mx {listed}\n")
    else:
        out.append(f"MTA-STS   {record}; {sts['error'] or 'no policy'}\n")

    if report["hosts"]:
        rows = [["TLSA", "STATUS", "RECORDS"]]
        for host in report["hosts"]:
            tlsa = host["tlsa"]
            records = "; ".join(r["record"][:20] + "…" for r in tlsa["records"]) or "-"
            rows.append([tlsa["name"], tlsa["status"], records])
        out.append("DANE\n" + _table(rows))

        rows = [["HOST", "PLAN", "TLS", "CERTIFICATE", "REQUIRETLS", "VERDICT"]]
        for host in report["hosts"]:
            rows.append(_host_row(host, report["probed"]))
        out.append("Candidates (for a REQUIRETLS message, RFC 8689 §4.2.1)\n" + _table(rows))
    return "".join(out)


def _host_row(host: dict[str, Any], probed: bool) -> list[str]:
    if host["candidate"] is None:
        skipped = host["skipped"] or {"status": None, "reason": "not planned"}
        return [host["name"], "skipped", "-", "-", "-", _short(skipped)]
    plan = host["candidate"]["security"]
    probe = host["probe"]
    if not probed or probe is None:
        return [host["name"], plan, "-", "-", "-", "not probed"]
    tls = probe["tls"]
    tls_text = (
        tls["version"] if tls else ("no STARTTLS" if probe["starttls_offered"] is False else "-")
    )
    auth = probe["authentication"]
    cert = "-" if auth is None else {True: "ok", False: "FAILED", None: "unchecked"}[auth["ok"]]
    verdict = probe["verdict"]
    text = "pass" if verdict["action"] == "proceed" else _short(verdict)
    return [host["name"], plan, tls_text, cert, _yes(probe["requiretls_offered"]), text]


def _short(verdict: dict[str, Any]) -> str:
    code = f"{verdict['status']} " if verdict.get("status") else ""
    return f"{code}{verdict['reason']}"
