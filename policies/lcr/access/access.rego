# METADATA
# title: LCR access decision
# description: |
#   May this caller see this resident's record, and which sections of it? Deny by
#   default: every deny reason is a rule of its own that holds when its check fails,
#   written so that a missing or malformed attribute is a reason to deny, never a way in.
#   The reason codes are the contract in docs/decision-contract.md.
package lcr.access

import data.lcr.classification
import data.lcr.config

# METADATA
# title: Access decision
# description: |
#   Always defined. `allow` only when there is no deny reason; `sections` is the
#   sorted list of allowed sections (requested ∩ the level's; all of the level's when
#   none were requested), empty when denied; `permitted` every section the level
#   allows (what redaction checks each resource against), empty when denied;
#   `reasons` the sorted deny codes; `audit_scope` for action audit.read, which
#   rows of a resident's Audit Trail the caller sees (own_care_service | all), else null;
#   `relationship` the roster status a record or menu request was allowed under, else
#   null; `roster_revision` the roster the decision was made with (null when none loaded).
#
#   The common case, a record or menu read of a current resident that every check
#   allows with no sections named, is decided by the first body (_resident_status and
#   _clear: the positive form of every deny reason); it gives the answer `_decision`
#   would give, in a fraction of the time (every rule evaluated costs). Anything else is
#   `_decision`. access_test.rego checks that the two agree.
# entrypoint: true
decision := {
	"allow": true,
	"access_level": input.subject.lcr_access_level,
	"sections": permitted,
	"permitted": permitted,
	"reasons": [],
	"audit_scope": null,
	"relationship": _resident_status,
	"roster_revision": data.roster.revision,
} if {
	_resident_status
	_clear
	permitted := sort(config.access_levels[input.subject.lcr_access_level])
} else := _decision

# No deny reason applies to this record or menu read, given _resident_status: each check
# is the positive form of the deny reasons named beside it. (The roster's checks are
# _resident_status; the ones that fail in practice come first, so that a denial falls
# through to _decision early.)
_clear if {
	# access_level_missing, access_level_unknown, access_level_no_access
	level := input.subject.lcr_access_level
	is_string(level)
	level != ""
	count(config.access_levels[level]) > 0

	# identifier_probing_cool_off
	_probe_answers < config.identifier_probing.cool_off_after

	# action_not_permitted, audit_trail_not_permitted; the relationship applies
	input.action in config.actions
	input.action != "audit.read"
	input.action in config.relationship.actions

	# section_unknown, no_permitted_section_requested: none named (all of the level's)
	input.sections == []

	# care_service_*: a known residential care home, enabled, in a London ICB
	service := config.care_services[input.subject.requesting_organization]
	service.type == "residential_care_home"
	service.lcr_enabled == true
	config.london_icbs[service.icb]

	# reason_for_request_not_permitted
	input.subject.reason_for_request in config.permitted_reasons_for_request

	# patient_identifiers_missing (the NHS number: _resident_status)
	is_string(input.patient.dob)
	input.patient.dob != ""

	# roster_revision is not null
	is_string(data.roster.revision)
}

# The decision from every rule (docs/decision-contract.md).
_decision := {
	"allow": allow,
	"access_level": _access_level,
	"sections": _granted,
	"permitted": _permitted,
	"reasons": sort(reasons),
	"audit_scope": _audit_scope,
	"relationship": _relationship,
	"roster_revision": _roster_revision,
}

# METADATA
# title: Allow
# description: True only when no deny reason applies.
# scope: document
default allow := false

allow if count(reasons) == 0

# Cost: each rule or function evaluated, and each set built from the data, costs more
# than a comparison, so the reasons compare inline where they can. A helper rule stays
# where several reasons share a value, and where a check is negated: `not f(x)` is
# undefined, not true, when x is undefined (a missing attribute), while `not _rule` holds.

# METADATA
# title: Deny reasons
# description: Machine-readable codes, one per failed check (docs/decision-contract.md).
# scope: document
reasons contains "access_level_missing" if _access_level == null

reasons contains "access_level_unknown" if {
	_access_level != null
	not _level_sections
}

reasons contains "access_level_no_access" if {
	count(_level_sections) == 0
	not input.action == "audit.read"
}

reasons contains "audit_trail_not_permitted" if {
	input.action == "audit.read"
	not _audit_grant
}

reasons contains "care_service_missing" if not _has_service

reasons contains "care_service_unknown" if {
	_has_service
	not _service
}

reasons contains "care_service_not_residential" if {
	_service
	not _service.type == "residential_care_home"
}

reasons contains "care_service_lcr_not_enabled" if {
	_service
	not _service.lcr_enabled == true
}

reasons contains "care_service_not_in_london_icb" if {
	_service
	not config.london_icbs[object.get(_service, "icb", null)]
}

reasons contains "reason_for_request_not_permitted" if not _reason_permitted

reasons contains "action_not_permitted" if not _action_permitted

reasons contains "patient_identifiers_missing" if not _has_patient_identifiers

# Only a list's members are looked at here; `sections` of any other type is the rule below.
reasons contains "section_unknown" if {
	some section in input.sections
	not section in classification.precedence
}

# `sections` must be a list (or absent/null, meaning everything the level allows).
reasons contains "section_unknown" if {
	sections := input.sections
	not is_array(sections)
	not is_null(sections)
}

reasons contains "no_permitted_section_requested" if {
	_sections_requested
	count(_level_sections) > 0
	not _permitted_section_requested
}

default _access_level := null

_access_level := level if {
	level := input.subject.lcr_access_level
	is_string(level)
	level != ""
}

default _granted := []

# None requested: every section the level allows.
_granted := _permitted if not _sections_requested

_granted := sort({section | some section in input.sections; section in _level_sections}) if {
	_sections_requested
	not input.action == "audit.read"
	allow
}

default _permitted := []

_permitted := sort(_level_sections) if {
	not input.action == "audit.read"
	allow
}

default _audit_scope := null

_audit_scope := _audit_grant if {
	input.action == "audit.read"
	allow
}

# A role (e.g. auditor) first, then the access level: no entry in either, no Audit Trail.
_audit_grant := config.audit_trail.roles[input.subject.lcr_audit_role] if {
	_non_empty_string(input.subject.lcr_audit_role)
	config.audit_trail.roles[input.subject.lcr_audit_role]
} else := config.audit_trail.access_levels[input.subject.lcr_access_level]

# The sections the caller's level allows, as the data lists them: each once
# (policies/lcr/config/config_test.rego), so the list stands for the set. Undefined for a
# missing or unknown level.
_level_sections := config.access_levels[_access_level]

# A non-empty list of sections was asked for (none, null or [] means all of the level's).
_sections_requested if {
	is_array(input.sections)
	count(input.sections) > 0
}

_permitted_section_requested if {
	some section in input.sections
	section in _level_sections
}

# The requesting care service's entry in the data (undefined when it has none).
_service := config.care_services[input.subject.requesting_organization]

_has_service if _non_empty_string(input.subject.requesting_organization)

_reason_permitted if input.subject.reason_for_request in config.permitted_reasons_for_request

_action_permitted if input.action in config.actions

_has_patient_identifiers if {
	_non_empty_string(input.patient.nhs_number)
	_non_empty_string(input.patient.dob)
}

_non_empty_string(value) if {
	is_string(value)
	value != ""
}
