"""SpellFS: the one namespace of run outputs, uploads and public data.

`paths` (the path rules) is import-light for clients; `spellfs.SpellFS` is the storage side."""
