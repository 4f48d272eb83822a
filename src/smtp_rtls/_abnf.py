"""RFC 5321 / RFC 6531 / RFC 3461 grammar pieces as regular expressions.

Each piece quotes the ABNF it implements.  ABNF quoted strings are
case-insensitive (RFC 5234 §2.3), so verbs and keywords are matched with
``re.IGNORECASE`` by their users.  The ``_U`` variants add RFC 6531 §3.3's
UTF-8 alternatives (``UTF8-non-ascii``) and apply only under SMTPUTF8.
"""

from __future__ import annotations

import re

# UTF8-non-ascii (RFC 6531 §3.3, RFC 3629 §4): every code point from U+0080 but
# the surrogates, which have no UTF-8 form.  The server decodes input with
# "surrogateescape", so invalid UTF-8 arrives as lone surrogates and must not
# match any grammar piece.
UTF8_NON_ASCII = r"\u0080-\ud7ff\ue000-\U0010ffff"

# Let-dig = ALPHA / DIGIT ; Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig
# sub-domain = Let-dig [Ldh-str]            (RFC 5321 §4.1.2)
SUB_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# Domain = sub-domain *("." sub-domain)
DOMAIN = rf"{SUB_DOMAIN}(?:\.{SUB_DOMAIN})*"
# RFC 6531 §3.3: sub-domain =/ U-label (approximated: any run of letters,
# digits, hyphens and non-ASCII characters not starting or ending with "-")
SUB_DOMAIN_U = (
    rf"[A-Za-z0-9{UTF8_NON_ASCII}](?:[A-Za-z0-9{UTF8_NON_ASCII}-]*[A-Za-z0-9{UTF8_NON_ASCII}])?"
)
DOMAIN_U = rf"{SUB_DOMAIN_U}(?:\.{SUB_DOMAIN_U})*"

# Snum = 1*3DIGIT  ; representing a decimal integer value in the range 0 through 255
# IPv4-address-literal = Snum 3("."  Snum)
# IPv6-address-literal = "IPv6:" IPv6-addr
# General-address-literal = Standardized-tag ":" 1*dcontent
# Standardized-tag = Ldh-str ; dcontent = %d33-90 / %d94-126
ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"  # refined in _address.py

# atext (RFC 5322 §3.2.3) = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*"
#        / "+" / "-" / "/" / "=" / "?" / "^" / "_" / "`" / "{" / "|" / "}" / "~"
ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
ATEXT_U = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{UTF8_NON_ASCII}]"
# Dot-string = Atom *("."  Atom) ; Atom = 1*atext
DOT_STRING = rf"{ATEXT}+(?:\.{ATEXT}+)*"
DOT_STRING_U = rf"{ATEXT_U}+(?:\.{ATEXT_U}+)*"
# Quoted-string = DQUOTE *QcontentSMTP DQUOTE
# QcontentSMTP = qtextSMTP / quoted-pairSMTP
# quoted-pairSMTP = %d92 %d32-126 ; qtextSMTP = %d32-33 / %d35-91 / %d93-126
QUOTED_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
QUOTED_STRING_U = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{UTF8_NON_ASCII}]|\\[\x20-\x7e])*"'

# esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
ESMTP_KEYWORD = r"[A-Za-z0-9][A-Za-z0-9-]*"
# esmtp-value = 1*(%d33-60 / %d62-126) ; RFC 6531 §3.3 adds UTF8-non-ascii
ESMTP_VALUE = rf"[\x21-\x3c\x3e-\x7e{UTF8_NON_ASCII}]+"
# xtext = *( xchar / hexchar ) (RFC 3461 §4): xchar is "!".."~" but "+" and "=";
# hexchar = "+" 2(%x30-39 / %x41-46)
XTEXT = r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*"

# -- fast-path forms -----------------------------------------------------------
#
# The same languages as SUB_DOMAIN_U, DOMAIN_U, DOT_STRING_U and a list of
# esmtp-param, written so that the engine does not backtrack: every run is
# possessive ("++", "*+", "?+", Python 3.11), which matches the same texts
# because what may follow a run never starts with a character the run could
# take, so giving characters back could not lead to a match.  They serve fast
# paths that fall back to the general code on anything they do not match.
#
# sub-domain = Let-dig [Ldh-str], and the U-label approximation above: letters
# and digits (ASCII or not) with hyphens only inside, that is, runs of letters
# and digits joined by runs of hyphens.
_LET_DIG_U = rf"[A-Za-z0-9{UTF8_NON_ASCII}]"
SUB_DOMAIN_U_FAST = rf"{_LET_DIG_U}++(?:-++{_LET_DIG_U}++)*+"
DOMAIN_U_FAST = rf"{SUB_DOMAIN_U_FAST}(?:\.{SUB_DOMAIN_U_FAST})*+"
DOT_STRING_U_FAST = rf"{ATEXT_U}++(?:\.{ATEXT_U}++)*+"
# IPv4-address-literal = Snum 3("."  Snum), Snum 0 through 255 in 1*3DIGIT
# (so "010" is one); the alternatives backtrack over three digits at most.
SNUM = r"(?:25[0-5]|2[0-4][0-9]|[01][0-9][0-9]|[0-9][0-9]?)"
IPV4_ADDRESS_LITERAL = rf"\[{SNUM}(?:\.{SNUM}){{3}}\]"
# Mail-parameters = esmtp-param *(SP esmtp-param) (Rcpt-parameters alike), with
# esmtp-param = esmtp-keyword ["=" esmtp-value]; neither piece holds "=" or SP.
ESMTP_PARAM_FAST = rf"[A-Za-z0-9][A-Za-z0-9-]*+(?:=[\x21-\x3c\x3e-\x7e{UTF8_NON_ASCII}]++)?+"
ESMTP_PARAMS_FAST = rf"{ESMTP_PARAM_FAST}(?: {ESMTP_PARAM_FAST})*+"

re_domain = re.compile(DOMAIN)
re_domain_u = re.compile(DOMAIN_U)
re_dot_string = re.compile(DOT_STRING)
re_dot_string_u = re.compile(DOT_STRING_U)
re_quoted_string = re.compile(QUOTED_STRING)
re_quoted_string_u = re.compile(QUOTED_STRING_U)
re_keyword = re.compile(ESMTP_KEYWORD)
re_value = re.compile(ESMTP_VALUE)
re_xtext = re.compile(XTEXT)
