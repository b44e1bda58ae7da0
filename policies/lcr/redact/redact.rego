# METADATA
# title: Redaction of a fetched record
# description: |
#   Which of the fetched FHIR resources may leave, given the sections the access
#   decision allowed. Asked only after an allow; still fails closed on its own.
package lcr.redact

import data.lcr.classify

# METADATA
# title: Redaction result
# description: |
#   Parallel arrays, one entry per input resource, in order: `sections[i]` is the
#   primary section of resource i ("patient" for the resident's own Patient, null when
#   unclassified) and `keep[i]` whether it may leave.
# entrypoint: true
result := {
	"sections": [entry.section | some entry in _entries],
	"keep": [entry.keep | some entry in _entries],
}

default _resources := []

_resources := input.resources if is_array(input.resources)

_allowed contains section if {
	some section in input.allowed_sections
	is_string(section)
}

# Everything the caller's level permits. A resource shown for one allowed section must
# not carry another, unpermitted one. Absent, it is the allowed sections themselves.
_permitted := {section |
	some section in input.permitted_sections
	is_string(section)
} if {
	_has_permitted
} else := _allowed

_has_permitted if is_array(input.permitted_sections)

default _patient_id := null

_patient_id := input.patient_id if is_string(input.patient_id)

# The GP organization index is built once for the whole record, then each resource
# is classified on its own: linear in the number of resources.
_entries := [_entry(resource, org_index, _patient_id) | some resource in _resources] if {
	org_index := classify.org_index(_resources)
}

# The resident's own Patient is the header of the view: shown whenever the decision
# allowed at least one section.
_entry(resource, org_index, patient_id) := {"section": "patient", "keep": count(_allowed) > 0} if {
	resource.resourceType == "Patient"
	resource.id == patient_id
} else := _classified(classify.sections_of(resource, org_index))

_classified(sections) := {"section": _primary(sections), "keep": _shown(sections)}

default _primary(_) := null

_primary(sections) := classify.primary(sections)

# Shown only when it matches at least one allowed section and every section it
# matches is permitted (unclassified resources are always withheld).
default _shown(_) := false

_shown(sections) if {
	count(sections & _allowed) > 0
	count(sections - _permitted) == 0
}
