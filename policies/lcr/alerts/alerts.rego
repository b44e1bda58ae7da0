# METADATA
# title: LCR access monitoring
# description: |
#   Alerts for privacy officers over a window of the audit log (docs/monitoring.md).
#   Pure: the window and the rows come from input, thresholds, severities and working
#   hours from data.lcr.alerts (data.yaml), residents' family names from the roster
#   bundle (data.roster). No clock, no network: the same input always gives the same
#   alerts.
#
#   input.window: {"since", "until"} (RFC 3339, UTC); rows outside it are ignored.
#   input.rows: the audit rows of the window, each {"seq", "time", "subject_id",
#   "subject_name", "care_service", "action", "outcome", "error_code", "reasons",
#   "nhs_number"}.
#   input.history: request counts before the window, one entry per staff member and
#   care service, {"subject_id", "care_service", "counts": [{"hour", "action",
#   "count"}]}, one count per action and UTC hour, hour as "2026-11-01T09:00:00Z".
package lcr.alerts

# METADATA
# title: Report
# description: |
#   The alerts, most severe first, then by their first row; and the start of the
#   history the unusual-volume rule compares with.
# entrypoint: true
report := {
	"alerts": [entry[4] | some entry in _ordered],
	"history_since": history_since,
	"time_zone": _tz,
}

# METADATA
# title: History start
# description: |
#   Where the history read for the unusual-volume rule starts: history_days before
#   input.window.since (RFC 3339, UTC). The window's rows are never part of it.
# entrypoint: true
history_since := time.format([
	time.add_date(_since_ns, 0, 0, 0 - _rules.unusual_volume.history_days),
	"UTC", "2006-01-02T15:04:05.000000Z07:00",
])

# METADATA
# title: Alerts raised
# description: |
#   One per rule and staff member (subject_id, care_service), or per rule, staff member
#   and day for unusual volume: the rule, its severity, the rows behind it (seq
#   numbers, with their count and first and last time) and a short message that names
#   no resident.
# scope: document
raised contains _alert("identifier_probing", staff, found, message) if {
	cfg := _rules.identifier_probing
	message := sprintf(
		"%d+ within %d minutes: %s",
		[cfg.count, cfg.within_minutes, concat(" / ", array.concat(cfg.outcomes, cfg.reasons))],
	)
	some staff, entries in _by_staff
	found := _bursts([e | some e in entries; _probe(e)], cfg.count, cfg.within_minutes)
	count(found) > 0
}

raised contains _alert("out_of_hours", staff, found, message) if {
	some staff, entries in _by_staff
	hours := _hours(staff[1])
	found := {e |
		some e in entries
		e.action in _rules.out_of_hours.actions
		not _inside(e.minute, hours)
	}
	count(found) > 0
	message := sprintf("outside working hours %s to %s %s", [hours.start, hours.end, _tz])
}

raised contains _alert("unusual_volume", staff, found, message) if {
	cfg := _rules.unusual_volume
	some [staff, day] in _volume_days
	found := {e |
		some e in _by_staff[staff]
		e.action in cfg.actions
		e.day == day
	}
	count(found) >= cfg.min_count
	daily := _history_daily[staff]
	count(daily) >= cfg.min_history_days
	median := _median(daily)
	count(found) > cfg.factor * median
	message := sprintf(
		"%d requests on %s; daily median %v over %d active days",
		[count(found), day, median, count(daily)],
	)
}

raised contains _alert("same_surname", staff, found, message) if {
	cfg := _rules.same_surname
	message := "resident's family name is the staff member's surname"
	some staff, entries in _by_staff
	found := {e |
		some e in entries
		e.action in cfg.actions
		e.outcome in cfg.outcomes
		_same_surname(e)
	}
	count(found) > 0
}

raised contains _alert("repeated_denials", staff, found, message) if {
	cfg := _rules.repeated_denials
	message := sprintf("%d+ denials within %d minutes", [cfg.count, cfg.within_minutes])
	some staff, entries in _by_staff
	denials := [e |
		some e in entries
		e.outcome in cfg.outcomes
		not _probe(e)
		not _only_ignored(e.reasons, cfg.ignored_reasons)
	]
	found := _bursts(denials, cfg.count, cfg.within_minutes)
	count(found) > 0
}

_rules := data.lcr.alerts.rules

_tz := data.lcr.alerts.time_zone

_since_ns := time.parse_rfc3339_ns(input.window.since)

_until_ns := time.parse_rfc3339_ns(input.window.until)

# The window's rows that name a staff member, with their time in ns, their local day
# and minute of the day, and the staff member's key [subject_id, care_service].
_entries contains entry if {
	some row in input.rows
	_non_empty_string(row.subject_id)
	ns := time.parse_rfc3339_ns(row.time)
	ns >= _since_ns
	ns < _until_ns
	[hour, minute, _] := time.clock([ns, _tz])
	entry := object.union(row, {
		"ns": ns,
		"day": _day(ns),
		"minute": (hour * 60) + minute,
		"staff": [row.subject_id, object.get(row, "care_service", null)],
	})
}

_by_staff[staff] := {e | some e in _entries; e.staff == staff} if {
	some staff in {e.staff | some e in _entries}
}

_day(ns) := sprintf("%04d-%02d-%02d", time.date([ns, _tz]))

# -- identifier probing and repeated denials ------------------------------------------

_probe(e) if e.outcome in _rules.identifier_probing.outcomes

_probe(e) if {
	some reason in e.reasons
	reason in _rules.identifier_probing.reasons
}

# The entries that fall in some span of `minutes` (from one of them) holding at least
# `n` of them: in time order, those in a run of n consecutive entries whose first and
# last are less than `minutes` apart (linear in the entries, not quadratic).
_bursts(entries, n, minutes) := {by_seq[order[j][1]] |
	by_seq := {e.seq: e | some e in entries}
	order := sort([[e.ns, e.seq] | some e in entries])
	some start in numbers.range(0, count(order) - n)
	order[(start + n) - 1][0] - order[start][0] < (minutes * 60) * 1000000000
	some j in numbers.range(start, (start + n) - 1)
}

_only_ignored(reasons, ignored) if {
	count(reasons) > 0
	every reason in reasons {
		reason in ignored
	}
}

# -- working hours -----------------------------------------------------------------------

_hours(service) := data.lcr.alerts.working_hours.care_services[service]

_hours(service) := data.lcr.alerts.working_hours.default if {
	not data.lcr.alerts.working_hours.care_services[service]
}

_inside(minute, hours) if {
	_minutes(hours.start) <= _minutes(hours.end)
	minute >= _minutes(hours.start)
	minute < _minutes(hours.end)
}

_inside(minute, hours) if {
	_minutes(hours.start) > _minutes(hours.end)
	minute >= _minutes(hours.start)
}

_inside(minute, hours) if {
	_minutes(hours.start) > _minutes(hours.end)
	minute < _minutes(hours.end)
}

_minutes(text) := (to_number(h) * 60) + to_number(m) if [h, m] := split(text, ":")

# -- unusual volume -------------------------------------------------------------------------

_volume_days contains [e.staff, e.day] if {
	some e in _entries
	e.action in _rules.unusual_volume.actions
}

# Per staff member, their request count on each local day of the history with any.
_history_daily[staff] := [total |
	some day in {b.day | some b in mine}
	total := sum([b.count | some b in mine; b.day == day])
] if {
	start := time.parse_rfc3339_ns(history_since)
	some h in input.history
	staff := [h.subject_id, object.get(h, "care_service", null)]
	mine := [{"day": _day(ns), "count": c.count} |
		some c in h.counts
		c.action in _rules.unusual_volume.actions
		ns := time.parse_rfc3339_ns(c.hour)
		ns >= start
		ns < _since_ns
	]
	count(mine) > 0
}

_median(values) := sort(values)[(count(values) - 1) / 2] if {
	count(values) % 2 == 1
}

_median(values) := (sort(values)[(count(values) / 2) - 1] + sort(values)[count(values) / 2]) / 2 if {
	count(values) > 0
	count(values) % 2 == 0
}

# -- same surname -----------------------------------------------------------------------------

_same_surname(e) if {
	family := lower(trim_space(data.roster.care_services[e.care_service][e.nhs_number].family_name))
	family != ""
	family == _surname(e.subject_name)
}

_surname(name) := lower(parts[count(parts) - 1]) if {
	parts := [p | some p in split(trim_space(name), " "); p != ""]
	count(parts) > 0
}

# -- the alert ----------------------------------------------------------------------------------

_alert(rule, staff, found, message) := {
	"rule": rule,
	"severity": _rules[rule].severity,
	"subject_id": staff[0],
	"subject_name": object.get(by_seq[seqs[0]], "subject_name", null),
	"care_service": staff[1],
	"seqs": seqs,
	"count": count(found),
	"first_time": min({e.time | some e in found}),
	"last_time": max({e.time | some e in found}),
	"message": message,
} if {
	by_seq := {e.seq: e | some e in found}
	seqs := sort(object.keys(by_seq))
}

_ordered := sort([[data.lcr.alerts.severities[a.severity], a.seqs[0], a.rule, a.subject_id, a] | some a in raised])

_non_empty_string(value) if {
	is_string(value)
	value != ""
}
