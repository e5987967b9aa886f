"""Bulletins, result notices, bonus tables and their delivery.

Importing the package puts WeasyPrint's compiled modules, where `make` built them for this
interpreter and source, in front of the installed source (reports.compiled), so that every
process that renders, a worker of the pool included, renders with them.
"""

from reports import compiled

compiled.install()
