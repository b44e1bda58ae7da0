# METADATA
# title: LCR access decision
# description: |
#   May this caller see this resident's record, and which sections of it? Deny by
#   default: every check on input is a named helper that is negated, so a missing or
#   malformed attribute is a reason to deny, never a way in. The reason codes are the
#   contract in docs/decision-contract.md.
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
# entrypoint: true
decision := {
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

# METADATA
# title: Deny reasons
# description: Machine-readable codes, one per failed check (docs/decision-contract.md).
# scope: document
reasons contains "access_level_missing" if not _has_level

reasons contains "access_level_unknown" if {
	_has_level
	not _level_known
}

reasons contains "access_level_no_access" if {
	_level_known
	count(_level_sections) == 0
	not _reads_audit_trail
}

reasons contains "audit_trail_not_permitted" if {
	_reads_audit_trail
	not _audit_grant
}

reasons contains "care_service_missing" if not _has_service

reasons contains "care_service_unknown" if {
	_has_service
	not _service_known
}

reasons contains "care_service_not_residential" if {
	_service_known
	not _service_residential
}

reasons contains "care_service_lcr_not_enabled" if {
	_service_known
	not _service_enabled
}

reasons contains "care_service_not_in_london_icb" if {
	_service_known
	not _service_in_london
}

reasons contains "reason_for_request_not_permitted" if not _reason_permitted

reasons contains "action_not_permitted" if not _action_permitted

reasons contains "patient_identifiers_missing" if not _has_patient_identifiers

reasons contains "section_unknown" if {
	some section in _requested
	not section in classification.precedence
}

# `sections` must be a list (or absent/null, meaning everything the level allows).
reasons contains "section_unknown" if {
	sections := input.sections
	not is_array(sections)
	not is_null(sections)
}

reasons contains "no_permitted_section_requested" if {
	count(_requested) > 0
	count(_level_sections) > 0
	count(_requested & _level_sections) == 0
}

default _access_level := null

_access_level := input.subject.lcr_access_level if _has_level

default _granted := []

_granted := sort(_level_sections) if {
	allow
	not _reads_audit_trail
	count(_requested) == 0
}

_granted := sort(_requested & _level_sections) if {
	allow
	not _reads_audit_trail
	count(_requested) > 0
}

default _permitted := []

_permitted := sort(_level_sections) if {
	allow
	not _reads_audit_trail
}

default _audit_scope := null

_audit_scope := _audit_grant if {
	allow
	_reads_audit_trail
}

# A role (e.g. auditor) first, then the access level: no entry in either, no Audit Trail.
_audit_grant := config.audit_trail.roles[input.subject.lcr_audit_role] if {
	_non_empty_string(input.subject.lcr_audit_role)
	config.audit_trail.roles[input.subject.lcr_audit_role]
} else := config.audit_trail.access_levels[input.subject.lcr_access_level]

_reads_audit_trail if input.action == "audit.read"

default _requested := set()

_requested := {section | some section in input.sections} if is_array(input.sections)

_level_sections := {section | some section in config.access_levels[input.subject.lcr_access_level]}

_service := config.care_services[input.subject.requesting_organization]

_has_level if _non_empty_string(input.subject.lcr_access_level)

_level_known if input.subject.lcr_access_level in object.keys(config.access_levels)

_has_service if _non_empty_string(input.subject.requesting_organization)

_service_known if input.subject.requesting_organization in object.keys(config.care_services)

_service_residential if _service.type == "residential_care_home"

_service_enabled if _service.lcr_enabled == true

_service_in_london if _service.icb in object.keys(config.london_icbs)

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
