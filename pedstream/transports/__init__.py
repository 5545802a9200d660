"""Everything that talks to the outside world about signals: the LSL transport (:mod:`.lsl`), the MQTT
transport (:mod:`.mqtt`), the replay of WFDB records (:mod:`.replay`, paced by :mod:`.pacer`), units
(:mod:`.units`) and the plumbing every source shares (:mod:`.base`). A transport imports
:mod:`pedstream.events` for what it delivers, never the monitor or the outputs (checked by
import-linter).
"""
