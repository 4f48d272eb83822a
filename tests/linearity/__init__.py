"""Cost linear in the input (issue 11): shapes, callgrind worker, dump parser."""
