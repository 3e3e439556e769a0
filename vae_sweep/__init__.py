"""The plumbing every package of vae-sweep uses, importing nothing of the project:
user-input errors and the command-line runner (`errors`), the one argument parser and
its value parsers (`cli`), the checks commands run before any work (`checks`), atomic
writes, content keys and the cache root (`files`), and device selection (`devices`).

It is the bottom layer (tests/test_layout.py holds the order): `selection`, `fid`,
`vae`, the E1/E2 protocols, `sweep` and the analysis all build on it.
"""

PROJECT = "vae-sweep"  # the distribution: its cache folder and its Ray namespace
