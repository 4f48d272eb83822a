"""Differential tests: smtp_rtls's parsers against aiosmtpd's and smtplib's."""
