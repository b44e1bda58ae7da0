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
	input.action in config.token_binding.actions
	_has_requested_record
	input.requested_record.nhs_number != input.patient.nhs_number
}

reasons contains "requested_record_missing" if {
	input.action in config.token_binding.actions
	config.token_binding.required == true
	not _has_requested_record
}

reasons contains "identifier_probing_cool_off" if {
	input.action in config.identifier_probing.actions
	_probe_answers >= config.identifier_probing.cool_off_after
}

default _roster_revision := null

_roster_revision := data.roster.revision if is_string(data.roster.revision)

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
# date's midnight like every _date.
_today := _date(input.request.date)

_date(text) := time.parse_ns("2006-01-02", text)

_days_after(text, days) := time.add_date(_date(text), 0, 0, days)

_grace := config.relationship.discharge_grace_days

_current_service_user if {
	_service_user.status in {"resident", "respite"}
	_today >= _date(_service_user.start)
	not _has_end
}

_current_service_user if {
	_service_user.status in {"resident", "respite", "discharged"}
	_today >= _date(_service_user.start)
	_today <= _days_after(_service_user.end, _grace)
}

# A discharge known only by its date (start not recorded).
_current_service_user if {
	_service_user.status == "discharged"
	not _has_start
	_today <= _days_after(_service_user.end, _grace)
}

_current_service_user if {
	_service_user.status == "pre_admission"
	_today >= _days_after(_service_user.start, 0 - config.relationship.pre_admission_days)
	_today <= _pre_admission_until
}

_pre_admission_until := _date(_service_user.end) if _has_end

_pre_admission_until := _date(_service_user.start) if not _has_end

_has_start if is_string(_service_user.start)

_has_end if is_string(_service_user.end)

_probe_answers := sum([n |
	some counted in config.identifier_probing.counted_outcomes
	n := _count(input.history.outcomes, counted)
]) + sum([n |
	some counted in config.identifier_probing.counted_reasons
	n := _count(input.history.reasons, counted)
])

_count(counts, name) := counts[name] if is_number(counts[name])

_count(counts, name) := 0 if not is_number(counts[name])
