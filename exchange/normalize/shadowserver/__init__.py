"""Shadowserver reports (CSV with a header row), one parser per report family.

Most reports are about the recipient's own machines, which are victims: sinkholed or
honeypot-attacking hosts, compromised websites, blocklisted or exposed addresses. Each row
becomes observed-data over the machine's observables and a sighting, by Shadowserver, of what
was seen: a malware family, an attack pattern or a vulnerability. A victim's address is never
made an indicator. `malware_url` reports suspect infrastructure (URLs serving malware); victim
reports that name the attacker's infrastructure too (a compromised website's `cc_url` and
`redirect_target`, the payload a honeypot attacker fetched) give it as suspect infrastructure
beside the sighting, unless it is the victim's own address or host.

Columns without a STIX home, known or not, are kept in the Shadowserver fields extension
(stix_extensions.py) so nothing the source said is lost. A header without a report's required
columns is one row-1 reject.

`event4_honeypot_brute_force` rows carry credentials the attackers tried: passwords never
leave the parser (not in STIX, not in the raw line kept on records and rejects); usernames are
dropped or kept only as a keyed hash.
"""

from __future__ import annotations

from ..base import Parser
from .event4 import Event4HoneypotBruteForce, Event4Sinkhole, Event4SinkholeHttp
from .lists import Blocklist, Scan
from .websites import CompromisedWebsite, MalwareUrl

FORMATS: tuple[type[Parser], ...] = (Event4Sinkhole, Event4SinkholeHttp,
                                     Event4HoneypotBruteForce, CompromisedWebsite, MalwareUrl,
                                     Blocklist, Scan)
