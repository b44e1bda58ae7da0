# Legitimate care relationship, token binding and identifier probing: part of the access
# decision. A record or menu request is allowed only for a current service user of the
# requesting care service (the roster the care app publishes as the `roster` bundle), only
# for the resident the care app's token was minted for, and not while the staff member is
# in an identifier-probing cool-off. Every date is compared with the request's own date
# (input.request.date, the request's day in London), never the clock, so a logged decision
# replays exactly (docs/relationships.md).
package lcr.access

import data.lcr.config

reasons contains "roster_not_loaded" if {
	_relationship_applies
	not _roster_loaded
}

reasons contains "no_legitimate_relationship" if {
	_relationship_applies
	_roster_loaded
	not _current_service_user
}

reasons contains "token_patient_mismatch" if {
	_has_requested_record
	input.requested_record.nhs_number != input.patient.nhs_number
	input.action in config.token_binding.actions
}

reasons contains "requested_record_missing" if {
	not _has_requested_record
	input.action in config.token_binding.actions
	config.token_binding.required == true
}

reasons contains "identifier_probing_cool_off" if {
	input.action in config.identifier_probing.actions
	_probe_answers >= config.identifier_probing.cool_off_after
}

default _roster_revision := null

_roster_revision := revision if {
	revision := data.roster.revision
	is_string(revision)
}

default _relationship := null

# The status the request was allowed under, for the audit row.
_relationship := _service_user.status if {
	_relationship_applies
	_current_service_user
}

_relationship_applies if input.action in config.relationship.actions

_roster_loaded if is_object(data.roster.care_services)

_service_user := data.roster.care_services[input.subject.requesting_organization][input.patient.nhs_number]

_has_requested_record if _non_empty_string(input.requested_record.nhs_number)

# The request's date in London (the sidecar's input.request.date), as nanoseconds at that
# date's midnight, like every date of the roster: time.parse_ns("2006-01-02", date), written
# out in each rule (a function call costs more than the builtin). A malformed date does
# not parse, so the rule that reads it does not hold.
_today := time.parse_ns("2006-01-02", input.request.date)

# The status of the resident of the common case, for `decision`: a current service user
# by the first rule of _current_service_user (a resident, or on respite, since `start`,
# no end date yet), named by a non-empty NHS number, the token bound to them. Undefined
# otherwise (roster_not_loaded, no_legitimate_relationship, patient_identifiers_missing,
# token_patient_mismatch and requested_record_missing do not apply when it is defined).
_resident_status := user.status if {
	user := data.roster.care_services[input.subject.requesting_organization][input.patient.nhs_number]
	user.status in {"resident", "respite"}
	not is_string(object.get(user, "end", null))
	time.parse_ns("2006-01-02", input.request.date) >= time.parse_ns("2006-01-02", user.start)
	is_string(input.patient.nhs_number)
	input.patient.nhs_number != ""
	input.requested_record.nhs_number == input.patient.nhs_number
}

# The rules are tried in this order and the first that holds decides (the common case,
# a resident with no end date, first).
_current_service_user if {
	_service_user.status in {"resident", "respite"}
	not is_string(object.get(_service_user, "end", null))
	_today >= time.parse_ns("2006-01-02", _service_user.start)
}

_current_service_user if {
	_service_user.status in {"resident", "respite", "discharged"}
	_today >= time.parse_ns("2006-01-02", _service_user.start)
	_today <= _end_of_grace
}

# A discharge known only by its date (start not recorded).
_current_service_user if {
	_service_user.status == "discharged"
	not is_string(object.get(_service_user, "start", null))
	_today <= _end_of_grace
}

_current_service_user if {
	_service_user.status == "pre_admission"
	start := time.parse_ns("2006-01-02", _service_user.start)
	_today >= time.add_date(start, 0, 0, 0 - config.relationship.pre_admission_days)
	_today <= _pre_admission_until
}

# The last day of a stay's discharge grace period (`end` plus discharge_grace_days).
_end_of_grace := time.add_date(
	time.parse_ns("2006-01-02", _service_user.end), 0, 0,
	config.relationship.discharge_grace_days,
)

_pre_admission_until := time.parse_ns("2006-01-02", _service_user.end) if is_string(_service_user.end)

_pre_admission_until := time.parse_ns("2006-01-02", _service_user.start) if {
	not is_string(object.get(_service_user, "end", null))
}

# Identifier-probing answers in the caller's history: the counted outcomes and deny reasons
# (a count that is not a number counts 0).
_probe_answers := sum([n |
	some counted in config.identifier_probing.counted_outcomes
	n := input.history.outcomes[counted]
	is_number(n)
]) + sum([n |
	some counted in config.identifier_probing.counted_reasons
	n := input.history.reasons[counted]
	is_number(n)
])
