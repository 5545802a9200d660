"""Where results go: the terminal dashboard (:mod:`.dashboard`), the JSON lines events file
(:mod:`.jsonlines`), alarm strips (:mod:`.strips`), the alarm lifecycle in front of every output
(:mod:`.lifecycle`), HL7 v2 with its outbox and FHIR (:mod:`.hl7sink`, :mod:`.outbox`, :mod:`.hl7msg`,
:mod:`.integrations`), EDF+ recording and repair (:mod:`.recording`, :mod:`.edffile`, :mod:`.edfrepair`)
and the writer thread they share (:mod:`.linewriter`). An output reads :mod:`pedstream.events`, never
the monitor's internals or a transport (checked by import-linter).
"""
