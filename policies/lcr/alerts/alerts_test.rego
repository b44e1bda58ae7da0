package lcr.alerts_test

import data.lcr.alerts

# An allowed record fetch by a senior carer at VM101, at noon on 29 November (GMT:
# London time is UTC then; in July it is BST, UTC+1).
_base := {
	"seq": 1,
	"time": "2026-11-29T12:00:00.000000Z",
	"subject_id": "VM101-staff-001",
	"subject_name": "Ada Okafor",
	"care_service": "VM101",
	"action": "record.read",
	"outcome": "allowed",
	"error_code": null,
	"reasons": [],
	"nhs_number": "9990000018",
}

_row(seq, at, changes) := object.union_n([_base, {"seq": seq, "time": at}, changes])

_at(seq, clock) := _row(seq, sprintf("2026-11-29T%s.000000Z", [clock]), {})

_no_match(seq, clock) := _row(seq, sprintf("2026-11-29T%s.000000Z", [clock]), {
	"outcome": "no-matching-record",
	"error_code": "no-matching-record",
})

_denied(seq, clock, reasons) := _row(seq, sprintf("2026-11-29T%s.000000Z", [clock]), {
	"outcome": "denied",
	"error_code": "access-denied",
	"reasons": reasons,
})

# The input for rows of 29 November, with VM101-staff-001's request counts before it.
_in(rows, counts) := {
	"window": {"since": "2026-11-29T00:00:00.000000Z", "until": "2026-11-30T00:00:00.000000Z"},
	"rows": rows,
	"history": [_history("VM101-staff-001", counts)],
}

_history(sub, counts) := {"subject_id": sub, "care_service": "VM101", "counts": counts}

_of(rule, found) := {a | some a in found; a.rule == rule}

_seqs(rule, found) := {a.seqs | some a in found; a.rule == rule}

_roster := {"revision": "roster-sha256-test", "care_services": {
	"VM101": {
		"9990000018": {"status": "resident", "start": "2026-01-05", "end": null, "family_name": "Okafor"},
		"9990000026": {"status": "resident", "start": "2026-01-05", "end": null, "family_name": "Smith"},
	},
	"VM102": {"9990000034": {"status": "respite", "start": "2026-11-20", "end": "2026-12-04", "family_name": "Jones"}},
}}

# -- identifier probing ------------------------------------------------------------------------

test_probing_three_unmatched_within_an_hour if {
	rows := [_no_match(1, "10:00:00"), _no_match(2, "10:20:00"), _no_match(3, "10:59:59"), _at(4, "11:00:00")]
	found := alerts.raised with input as _in(rows, [])
	[a] := [a | some a in found; a.rule == "identifier_probing"]
	a.seqs == [1, 2, 3]
	a.severity == "high"
	a.subject_id == "VM101-staff-001"
	a.care_service == "VM101"
	a.count == 3
	a.first_time == "2026-11-29T10:00:00.000000Z"
	a.last_time == "2026-11-29T10:59:59.000000Z"
	a.subject_name == "Ada Okafor"
	a.message == concat(" / ", [
		"3+ within 60 minutes: no-matching-record", "no_legitimate_relationship",
		"token_patient_mismatch", "identifier_probing_cool_off",
	])
}

test_probing_counts_non_resident_and_other_resident_denials if {
	rows := [
		_no_match(1, "10:00:00"),
		_denied(2, "10:05:00", ["no_legitimate_relationship"]),
		_denied(3, "10:10:00", ["care_service_unknown", "no_legitimate_relationship"]),
		_denied(4, "10:15:00", ["token_patient_mismatch"]),
	]
	found := alerts.raised with input as _in(rows, [])
	_seqs("identifier_probing", found) == {[1, 2, 3, 4]}
}

test_probing_not_raised_below_the_count if {
	found := alerts.raised with input as _in([_no_match(1, "10:00:00"), _no_match(2, "10:20:00")], [])
	count(_of("identifier_probing", found)) == 0
}

test_probing_not_raised_when_spread_over_more_than_an_hour if {
	rows := [_no_match(1, "10:00:00"), _no_match(2, "10:40:00"), _no_match(3, "11:00:00"), _no_match(4, "11:59:00")]
	found := alerts.raised with input as _in(rows, [])
	count(_of("identifier_probing", found)) == 0
}

test_probing_lists_every_row_of_every_burst_only if {
	rows := [
		_no_match(1, "09:00:00"), _no_match(2, "09:10:00"), _no_match(3, "09:20:00"),
		_no_match(4, "13:00:00"),
		_no_match(5, "16:00:00"), _no_match(6, "16:30:00"), _no_match(7, "16:45:00"), _no_match(8, "16:50:00"),
	]
	found := alerts.raised with input as _in(rows, [])
	_seqs("identifier_probing", found) == {[1, 2, 3, 5, 6, 7, 8]}
}

test_probing_is_per_staff_member if {
	rows := [
		_no_match(1, "10:00:00"),
		object.union(_no_match(2, "10:01:00"), {"subject_id": "VM101-staff-002"}),
		object.union(_no_match(3, "10:02:00"), {"care_service": "VM102"}),
	]
	found := alerts.raised with input as _in(rows, [])
	count(_of("identifier_probing", found)) == 0
}

test_probing_ignores_other_denials if {
	rows := [_denied(1, "10:00:00", ["section_unknown"]), _no_match(2, "10:01:00"), _no_match(3, "10:02:00")]
	found := alerts.raised with input as _in(rows, [])
	count(_of("identifier_probing", found)) == 0
}

# -- out of hours -------------------------------------------------------------------------------

test_out_of_hours_edges_in_winter if {
	rows := [_at(1, "06:59:59"), _at(2, "07:00:00"), _at(3, "21:59:59"), _at(4, "22:00:00"), _at(5, "00:30:00")]
	found := alerts.raised with input as _in(rows, [])
	[a] := [a | some a in found; a.rule == "out_of_hours"]
	a.seqs == [1, 4, 5]
	a.severity == "low"
	a.message == "outside working hours 07:00 to 22:00 Europe/London"
}

test_out_of_hours_reads_london_summer_time if {
	rows := [
		_row(1, "2026-07-01T05:59:00.000000Z", {}), # 06:59 BST: outside
		_row(2, "2026-07-01T06:00:00.000000Z", {}), # 07:00 BST: inside
		_row(3, "2026-07-01T20:59:00.000000Z", {}), # 21:59 BST: inside
		_row(4, "2026-07-01T21:00:00.000000Z", {}), # 22:00 BST: outside
	]
	summer := {"since": "2026-07-01T00:00:00.000000Z", "until": "2026-07-02T00:00:00.000000Z"}
	found := alerts.raised with input as {"window": summer, "rows": rows, "history": []}
	_seqs("out_of_hours", found) == {[1, 4]}
}

test_out_of_hours_per_care_service if {
	# VM102 opens at 06:00 and closes at 23:00.
	rows := [
		object.union(_at(1, "06:30:00"), {"care_service": "VM102"}),
		object.union(_at(2, "22:30:00"), {"care_service": "VM102"}),
		object.union(_at(3, "23:00:00"), {"care_service": "VM102"}),
		_at(4, "06:30:00"),
	]
	found := alerts.raised with input as _in(rows, [])
	_seqs("out_of_hours", found) == {[3], [4]}
}

test_out_of_hours_across_midnight if {
	rows := [_at(1, "21:00:00"), _at(2, "02:00:00"), _at(3, "07:59:00"), _at(4, "08:00:00"), _at(5, "12:00:00")]
	night := {"default": {"start": "20:00", "end": "08:00"}, "care_services": {}}
	found := alerts.raised with input as _in(rows, []) with alerts.working_hours as night
	_seqs("out_of_hours", found) == {[4, 5]}
}

test_out_of_hours_whole_day if {
	always := {"default": {"start": "00:00", "end": "24:00"}, "care_services": {}}
	found := alerts.raised with input as _in([_at(1, "00:00:00"), _at(2, "23:59:59")], [])
		with alerts.working_hours as always
	count(_of("out_of_hours", found)) == 0
}

test_out_of_hours_only_the_listed_actions if {
	found := alerts.raised with input as _in([object.union(_at(1, "03:00:00"), {"action": "audit.read"})], [])
	count(_of("out_of_hours", found)) == 0
}

test_rows_outside_the_window_or_without_staff_are_ignored if {
	rows := [
		_row(1, "2026-11-28T23:59:59.999999Z", {}),
		_row(2, "2026-11-30T00:00:00.000000Z", {}),
		_row(3, "not a time", {}),
		object.union(_at(4, "03:00:00"), {"subject_id": null}),
		object.union(_at(5, "03:00:00"), {"subject_id": ""}),
	]
	count(alerts.raised) == 0 with input as _in(rows, [])
}

# -- unusual volume -----------------------------------------------------------------------------

# `minutes` minutes after `hour`:00 UTC on `day`.
_clock(day, hour, minutes) := sprintf("%sT%02d:%02d:00.000000Z", [day, hour + floor(minutes / 60), minutes % 60])

# `n` requests on 29 November from 09:00, one a minute, seq 0 to n - 1.
_day_of(n) := [_row(i, _clock("2026-11-29", 9, i), {}) | some i in numbers.range(0, n - 1)]

# n requests in the UTC hour.
_bucket(hour, action, n) := {"action": action, "hour": hour, "count": n}

# n record requests at 10:00 UTC on each of the given days of November.
_days(days, n) := [_bucket(sprintf("2026-11-%02dT10:00:00Z", [d]), "record.read", n) | some d in days]

test_volume_raised_against_own_median if {
	found := alerts.raised with input as _in(_day_of(31), _days(numbers.range(20, 28), 10))
	[a] := [a | some a in found; a.rule == "unusual_volume"]
	a.severity == "medium"
	a.count == 31
	a.seqs == numbers.range(0, 30)
	a.message == "31 requests on 2026-11-29; daily median 10 over 9 active days"
}

test_volume_not_raised_at_factor_times_median if {
	history := [_bucket(sprintf("2026-11-%02dT10:00:00Z", [d]), "menu.read", 11) | some d in numbers.range(20, 28)]
	at_33 := alerts.raised with input as _in(_day_of(33), history)
	count(_of("unusual_volume", at_33)) == 0
	at_34 := alerts.raised with input as _in(_day_of(34), history)
	count(_of("unusual_volume", at_34)) == 1
}

test_volume_not_raised_below_min_count if {
	at_29 := alerts.raised with input as _in(_day_of(29), _days(numbers.range(20, 28), 1))
	count(_of("unusual_volume", at_29)) == 0
	at_30 := alerts.raised with input as _in(_day_of(30), _days(numbers.range(20, 28), 1))
	count(_of("unusual_volume", at_30)) == 1
}

test_volume_needs_enough_days_of_history if {
	found := alerts.raised with input as _in(_day_of(40), _days(numbers.range(25, 28), 2))
	count(_of("unusual_volume", found)) == 0
}

test_volume_median_of_an_even_number_of_days_and_hours_summed if {
	# Six days: 4, 4, 6 (two hours of 3), 8, 20, 20 → median 7; 30 is more than 3 x 7, not 5 x 7.
	history := [
		_bucket("2026-11-20T10:00:00Z", "record.read", 4),
		_bucket("2026-11-21T10:00:00Z", "record.read", 4),
		_bucket("2026-11-22T10:00:00Z", "record.read", 3),
		_bucket("2026-11-22T11:00:00Z", "menu.read", 3),
		_bucket("2026-11-23T10:00:00Z", "record.read", 8),
		_bucket("2026-11-24T10:00:00Z", "record.read", 20),
		_bucket("2026-11-25T10:00:00Z", "record.read", 20),
	]
	found := alerts.raised with input as _in(_day_of(30), history)
	[a] := [a | some a in found; a.rule == "unusual_volume"]
	contains(a.message, "median 7 over 6 active days")
	strict := alerts.raised with input as _in(_day_of(30), history) with alerts.rules.unusual_volume.factor as 5
	count(_of("unusual_volume", strict)) == 0
}

test_volume_history_is_the_staff_members_own if {
	theirs := [_history("VM101-staff-002", _days(numbers.range(20, 28), 1))]
	others := object.union(_in(_day_of(40), []), {"history": theirs})
	found := alerts.raised with input as others
	count(_of("unusual_volume", found)) == 0
}

test_volume_history_ignores_other_actions_and_hours_outside_it if {
	other_action := [_bucket(sprintf("2026-11-%02dT10:00:00Z", [d]), "audit.read", 1) | some d in numbers.range(20, 28)]

	# before history_since, and inside the window itself
	outside := {
		"2026-10-31T23:00:00Z", "2026-11-29T01:00:00Z", "2026-11-29T02:00:00Z",
		"2026-11-29T03:00:00Z", "2026-11-29T04:00:00Z", "2026-11-29T05:00:00Z",
	}
	stray := [_bucket(h, "record.read", 1) | some h in outside]
	found := alerts.raised with input as _in(_day_of(40), array.concat(other_action, stray))
	count(_of("unusual_volume", found)) == 0
}

test_volume_counts_each_london_day if {
	# 23:xx UTC in June is 00:xx BST the next day: five requests on each of 21 June to 1 July.
	history := [_bucket(sprintf("2026-06-%02dT23:00:00Z", [d]), "record.read", 5) | some d in numbers.range(20, 30)]
	morning := [_row(i, _clock("2026-07-01", 7, i), {}) | some i in numbers.range(0, 15)]
	late := [_row(100 + i, _clock("2026-07-01", 23, i), {}) | some i in numbers.range(0, 19)]
	two_days := {
		"window": {"since": "2026-07-01T00:00:00Z", "until": "2026-07-03T00:00:00Z"},
		"rows": array.concat(morning, late),
		"history": [_history("VM101-staff-001", history)],
	}

	# 16 requests on 1 July and 20 on 2 July (BST): neither reaches min_count (30) ...
	found := alerts.raised with input as two_days
	count(_of("unusual_volume", found)) == 0

	# ... and with min_count 10, each day is more than 3 x 5.
	lowered := alerts.raised with input as two_days with alerts.rules.unusual_volume.min_count as 10
	{[a.count, a.first_time] | some a in lowered; a.rule == "unusual_volume"} == {
		[16, "2026-07-01T07:00:00.000000Z"],
		[20, "2026-07-01T23:00:00.000000Z"],
	}
}

test_history_since_is_history_days_before_the_window if {
	alerts.history_since == "2026-11-01T00:00:00.000000Z" with input as _in([], [])
	alerts.history_since == "2026-06-03T00:00:00.000000Z" with input as {"window": {"since": "2026-07-01T00:00:00Z"}}
}

# -- same surname -------------------------------------------------------------------------------

test_same_surname_raised_from_the_roster if {
	rows := [
		_at(1, "10:00:00"), # Okafor opens Okafor
		object.union(_at(2, "10:05:00"), {"nhs_number": "9990000026"}), # Smith: no
		object.union(_at(3, "10:10:00"), {"subject_name": "  Bo   OKAFOR "}),
		object.union(_at(4, "10:15:00"), {"subject_id": "VM101-staff-009", "subject_name": "Okafor"}),
	]
	found := alerts.raised with input as _in(rows, []) with data.roster as _roster
	mine := _of("same_surname", found)
	{[a.subject_id, a.seqs] | some a in mine} == {["VM101-staff-001", [1, 3]], ["VM101-staff-009", [4]]}
	every a in mine {
		a.severity == "high"
		not contains(a.message, "Okafor")
	}
}

test_same_surname_only_the_care_services_own_residents if {
	# 9990000034 (Jones) is on VM102's roster, not VM101's.
	row := object.union(_at(1, "10:00:00"), {"subject_name": "Cy Jones", "nhs_number": "9990000034"})
	at_vm101 := alerts.raised with input as _in([row], []) with data.roster as _roster
	count(_of("same_surname", at_vm101)) == 0
	at_vm102 := alerts.raised with input as _in([object.union(row, {"care_service": "VM102"})], [])
		with data.roster as _roster
	count(_of("same_surname", at_vm102)) == 1
}

test_same_surname_only_what_was_shown if {
	found := alerts.raised with input as _in([_denied(1, "10:00:00", ["access_level_no_access"])], [])
		with data.roster as _roster
	count(_of("same_surname", found)) == 0
}

test_same_surname_needs_the_roster if {
	found := alerts.raised with input as _in([_at(1, "10:00:00")], [])
	count(_of("same_surname", found)) == 0
}

test_same_surname_ignores_empty_names if {
	blank := {"revision": "r", "care_services": {"VM101": {"9990000018": {"family_name": " "}}}}
	one_word := alerts.raised with input as _in([object.union(_at(1, "10:00:00"), {"subject_name": "Ada  "})], [])
		with data.roster as blank
	count(_of("same_surname", one_word)) == 0
	no_name := alerts.raised with input as _in([object.union(_at(1, "10:00:00"), {"subject_name": null})], [])
		with data.roster as _roster
	count(_of("same_surname", no_name)) == 0
}

# -- repeated denials ---------------------------------------------------------------------------

test_repeated_denials_five_within_an_hour if {
	rows := [_denied(i, sprintf("10:%02d:00", [i * 10]), ["section_unknown"]) | some i in numbers.range(1, 5)]
	found := alerts.raised with input as _in(rows, [])
	[a] := [a | some a in found; a.rule == "repeated_denials"]
	a.seqs == [1, 2, 3, 4, 5]
	a.severity == "medium"
	a.message == "5+ denials within 60 minutes"
}

test_repeated_denials_not_raised_for_four if {
	rows := [_denied(i, sprintf("10:%02d:00", [i * 10]), ["section_unknown"]) | some i in numbers.range(1, 4)]
	found := alerts.raised with input as _in(rows, [])
	count(_of("repeated_denials", found)) == 0
}

test_repeated_denials_ignore_the_platforms_failures if {
	rows := array.concat(
		[_denied(i, sprintf("10:%02d:00", [i * 10]), ["roster_not_loaded"]) | some i in numbers.range(1, 4)],
		[_denied(5, "10:50:00", ["roster_not_loaded", "section_unknown"])],
	)
	found := alerts.raised with input as _in(rows, [])
	count(_of("repeated_denials", found)) == 0
	people := [_denied(i, sprintf("10:%02d:00", [i]), ["section_unknown"]) | some i in numbers.range(51, 54)]
	more := array.concat(rows, people)
	_seqs("repeated_denials", alerts.raised) == {[5, 51, 52, 53, 54]} with input as _in(more, [])
}

test_probing_counts_the_cool_off_refusals if {
	refused := [_denied(i, sprintf("10:0%d:00", [i]), ["identifier_probing_cool_off"]) | some i in numbers.range(2, 3)]
	rows := array.concat([_no_match(1, "10:00:00")], refused)
	_seqs("identifier_probing", alerts.raised) == {[1, 2, 3]} with input as _in(rows, [])
}

test_repeated_denials_leave_probing_to_its_rule if {
	rows := [_denied(i, sprintf("10:%02d:00", [i * 10]), ["no_legitimate_relationship"]) | some i in numbers.range(1, 5)]
	found := alerts.raised with input as _in(rows, [])
	count(_of("repeated_denials", found)) == 0
	_seqs("identifier_probing", found) == {[1, 2, 3, 4, 5]}
}

# -- the report ---------------------------------------------------------------------------------

test_report_lists_most_severe_first if {
	rows := [_at(1, "03:00:00"), _no_match(2, "10:00:00"), _no_match(3, "10:01:00"), _no_match(4, "10:02:00")]
	r := alerts.report with input as _in(rows, [])
	[a.rule | some a in r.alerts] == ["identifier_probing", "out_of_hours"]
	r.history_since == "2026-11-01T00:00:00.000000Z"
	r.time_zone == "Europe/London"
}

test_report_without_rows if {
	r := alerts.report with input as _in([], [])
	r.alerts == []
}

test_every_rule_has_a_known_severity if {
	every rule in alerts.rules {
		alerts.severities[rule.severity]
	}
}
