# References in a fetched record: how the redaction policy reads references. Every FHIR
# form (relative, versioned, absolute on the upstream base, urn:uuid to an entry's fullUrl, contained "#id",
# identifier-only by NHS number or ODS code) resolved to what it points at, the FHIR
# Patient compartment, and GP sources. Read from the facts of each resource (facts.rego).
package lcr.redact

import data.lcr.classify

# -- indexes of the record --------------------------------------------------------------

# The resident's own Patient: its id is the matched id.
_headers contains i if {
	some i, facts in _facts
	facts.resourceType == "Patient"
	is_string(facts.id)
	facts.id == _patient_id
}

# Lookup tables {key: {"<index>": index}}, built in one pass each (object.union_n merges
# the entries of a key that several resources share, e.g. a duplicated id).
# regal ignore:prefer-set-or-object-rule
_by_key := object.union_n([{facts.key: {format_int(i, 10): i}} |
	some i, facts in _facts
	is_string(facts.key)
])

_by_url := object.union_n(array.concat(
	[{_canonical_url(url): {format_int(i, 10): i}} | some i, _ in _facts; url := input.full_urls[i]; is_string(url)],
	[{own_uri: {format_int(i, 10): i}} |
		some i, facts in _facts
		some own_uri in facts.uris
	],
))

# Identifier "alias|value" -> entries carrying it (ODS codes, NHS numbers).
_by_identifier := object.union_n([{key: {format_int(i, 10): i}} |
	some i, facts in _facts
	some key in facts.identifiers
])

_lookup(index, key) := {i | some i in index[key]}

_identifier_key(identifier) := concat("|", [classify.alias(identifier), trim_space(identifier.value)])

_canonical_url(url) := lower(trim_space(url))

# -- references, each distinct one read once per question --------------------------------

# A local Reference ("#id") names a resource contained in the resource that holds it; every
# other Reference resolves the same wherever it is, so what the rules ask of it is
# computed once per distinct Reference of the record (_record_refs), then looked up.
_local(ref) if startswith(ref.reference, "#")

# The parts' References, local ones apart (facts.rego): every other Reference of the record.
# regal ignore:prefer-set-or-object-rule
_record_refs := {ref | some facts in _facts; some ref in facts.own.refs} | {ref |
	some facts in _facts
	some part in facts.contained
	some ref in part.refs
}

# regal ignore:prefer-set-or-object-rule
_targets_of := {ref: targets(ref, -1) | some ref in _record_refs}

# regal ignore:prefer-set-or-object-rule
_naming_other := {ref | some ref in _record_refs; _other_person(ref, -1)}

# regal ignore:prefer-set-or-object-rule
_naming_resident := {ref | some ref in _record_refs; _names_resident(ref, -1)}

# regal ignore:prefer-set-or-object-rule
_naming_gp := {ref | some ref in _record_refs; _gp_reference(ref, -1)}

# The targets of a Reference in resource i (see targets).
_ref_targets(ref, i) := _targets_of[ref] if i == i

else := targets(ref, i)

# METADATA
# title: Targets of a reference
# description: |
#   What a Reference in top-level resource i points at, as ["entry", j] (a resource of
#   the record) or ["contained", id] (a resource contained in resource i). Empty when it
#   cannot be resolved in this record.
targets(ref, i) := _string_targets(ref, i) | _identifier_targets(ref)

_string_targets(ref, i) := {["contained", id] |
	startswith(ref.reference, "#")
	id := substring(ref.reference, 1, -1)
	some part in _facts[i].contained
	part.id == id
} if {
	startswith(ref.reference, "#")
}

_string_targets(ref, _) := object.get(_resolved, ref.reference, set()) if {
	is_string(ref.reference)
	not startswith(ref.reference, "#")
}

_string_targets(ref, _) := set() if not _is_reference_string(ref)

# Every distinct reference string of the record, resolved once.
# regal ignore:prefer-set-or-object-rule
_resolved := {reference: {["entry", j] | some j in _entry_targets(reference)} | some reference in _reference_strings}

# regal ignore:prefer-set-or-object-rule
_reference_strings := {ref.reference | some ref in _record_refs; is_string(ref.reference)}

_is_reference_string(ref) if is_string(ref.reference)

default _identifier_targets(_) := set()

_identifier_targets(ref) := {["entry", j] | some j in _lookup(_by_identifier, _identifier_key(ref.identifier))}

_entry_targets(reference) := _lookup(_by_url, _canonical_url(reference)) | _key_targets(reference)

default _key_targets(_) := set()

_key_targets(reference) := _lookup(_by_key, _relative_key(reference))

# "Type/id", "Type/id/_history/2", "{base}/Type/id" -> "Type/id"; other absolute URLs: none.
_relative_key(reference) := concat("/", array.slice(parts, 0, 2)) if {
	not contains(reference, ":")
	parts := split(trim_space(reference), "/")
	count(parts) >= 2
} else := concat("/", array.slice(parts, 0, 2)) if {
	startswith(lower(trim_space(reference)), concat("", [_base, "/"]))
	parts := split(substring(trim_space(reference), count(_base) + 1, -1), "/")
	count(parts) >= 2
}

# The facts of what a target is: an entry's own part, or a contained part.
_target_part(target, _) := _facts[target[1]].own if target[0] == "entry"

_target_part(["contained", id], i) := part if {
	some part in _facts[i].contained
	part.id == id
}

# References that name a person, not an organisation.
_person_types := ["Practitioner", "RelatedPerson", "Patient"]

_names_person(ref) if ref.type in _person_types

_names_person(ref) if {
	some type in _person_types
	startswith(ref.reference, concat("", [type, "/"]))
}

_names_person(ref) if {
	some type in _person_types
	contains(ref.reference, concat("", ["/", type, "/"]))
}

_names_person(ref) if classify.alias(ref.identifier) == "nhs_number"

_names_patient(ref, _) if ref.type == "Patient"

_names_patient(ref, _) if startswith(ref.reference, "Patient/")

_names_patient(ref, _) if contains(ref.reference, "/Patient/")

_names_patient(ref, _) if classify.alias(ref.identifier) == "nhs_number"

_names_patient(ref, i) if {
	some target in targets(ref, i)
	_target_part(target, i).resourceType == "Patient"
}

# The resident: every target is the resident's Patient, and an NHS number, if given, is theirs.
_names_resident(ref, i) if {
	found := targets(ref, i)
	count(found) > 0
	every target in found {
		target[0] == "entry"
		target[1] in _headers
	}
	_identifier_consistent(ref)
}

_identifier_consistent(ref) if not ref.identifier

_identifier_consistent(ref) if {
	ref.identifier
	not classify.alias(ref.identifier) == "nhs_number"
	is_string(ref.reference)
}

_identifier_consistent(ref) if {
	classify.alias(ref.identifier) == "nhs_number"
	trim_space(ref.identifier.value) == _nhs_number
}

_other_person(ref, i) if {
	_names_patient(ref, i)
	not _names_resident(ref, i)
}

# -- the Patient compartment ------------------------------------------------------------

# Nothing in the part names another person. Its References but local ones are among the
# record's (_record_refs), each judged once: compared as sets.
_only_this_resident(part, i) if {
	count(_set(part.refs) & _naming_other) == 0
	every ref in part.local_refs {
		not _other_person(ref, i)
	}
}

# A type of the compartment must name the resident through one of its elements (values
# that are not References name no one).
_in_compartment(part, _) if count(_set(part.compartment) & _naming_resident) > 0

_in_compartment(part, i) if {
	some ref in part.compartment
	not _record_refs[ref] # a local one
	_names_resident(ref, i)
}

_in_compartment(part, _) if part.compartment == null

# -- GP sources ------------------------------------------------------------------------

_gp_sourced(part, _) if part.gp_meta

_gp_sourced(part, _) if count(_set(part.gp_refs) & _naming_gp) > 0

_gp_sourced(part, i) if {
	some ref in part.gp_refs
	not _record_refs[ref] # a local one
	_gp_reference(ref, i)
}

_gp_reference(ref, i) if {
	some target in targets(ref, i)
	_gp_target(_target_part(target, i), _context(target, i))
}

# A source the record does not hold (an Organization, a PractitionerRole, or a reference
# whose type cannot be told, such as an unknown urn:uuid): its source cannot be known, so
# it counts as GP-sourced (the most restrictive source). A person it names alone
# (Practitioner, RelatedPerson, Patient) says nothing about an organisation.
_gp_reference(ref, i) if {
	count(targets(ref, i)) == 0
	not _names_person(ref)
}

_gp_target(part, _) if part.gp_practice

_gp_target(part, i) if {
	part.resourceType == "PractitionerRole"
	some target in targets(part.organization, i)
	_target_part(target, i).gp_practice
}

# The top-level resource a target's own references are resolved in.
_context(["entry", j], _) := j

_context(["contained", _], i) := i
