# References in a fetched record: how the redaction policy reads references. Every FHIR
# form (relative, versioned, absolute on the upstream base, urn:uuid to an entry's fullUrl, contained "#id",
# identifier-only by NHS number or ODS code) resolved to what it points at, the FHIR
# Patient compartment, and GP sources.
package lcr.redact

import data.lcr.classification
import data.lcr.classify

# -- indexes of the record --------------------------------------------------------------

# The resident's own Patient: its id is the matched id.
_headers contains i if {
	some i, resource in _resources
	resource.resourceType == "Patient"
	resource.id == _patient_id
}

# Lookup tables {key: {"<index>": index}}, built in one pass each (object.union_n merges
# the entries of a key that several resources share, e.g. a duplicated id).
# regal ignore:prefer-set-or-object-rule
_by_key := object.union_n([{key: {format_int(i, 10): i}} |
	some i, resource in _resources
	key := concat("/", [resource.resourceType, resource.id])
])

_by_url := object.union_n(array.concat(
	[{_canonical_url(url): {format_int(i, 10): i}} | some i, _ in _resources; url := _full_url(i)],
	[{_canonical_url(identifier.value): {format_int(i, 10): i}} |
		some i, resource in _resources
		some identifier in resource.identifier
		identifier.system == "urn:ietf:rfc:3986" # the resource's own URI (FHIR R4 Identifier)
		is_string(identifier.value)
	],
))

# Identifier "alias|value" -> entries carrying it (ODS codes, NHS numbers).
_by_identifier := object.union_n([{key: {format_int(i, 10): i}} |
	some i, resource in _resources
	some identifier in resource.identifier
	key := _identifier_key(identifier)
])

_lookup(index, key) := {i | some i in index[key]}

_identifier_key(identifier) := concat("|", [classify.alias(identifier), trim_space(identifier.value)])

_canonical_url(url) := lower(trim_space(url))

# -- references ------------------------------------------------------------------------

# A Reference: an object with a reference string, or an identifier-only reference.
_is_reference(node) if is_string(node.reference)

_is_reference(node) if is_object(node.identifier)

# References among objects: [path, Reference] pairs, or (_refs) the References alone.
_refs(nodes) := array.concat(
	[node | some node in nodes; is_string(node.reference)],
	[node | some node in nodes; is_object(node.identifier); not node.reference],
)

_references(objects) := array.concat(
	[[path, node] | some [path, node] in objects; is_string(node.reference)],
	[[path, node] | some [path, node] in objects; is_object(node.identifier); not node.reference],
)

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
	some contained in _resources[i].contained
	contained.id == id
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

_reference_strings contains node.reference if {
	some resource in _resources
	walk(resource, [_, node])
	is_string(node.reference)
	not startswith(node.reference, "#")
}

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

_target_resource(target, _) := _resources[target[1]] if target[0] == "entry"

_target_resource(["contained", id], i) := contained if {
	some contained in _resources[i].contained
	contained.id == id
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
	_target_resource(target, i).resourceType == "Patient"
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

# Nothing in the resource names another person.
_only_this_resident(references, i) if {
	every ref in references {
		not _other_person(ref, i)
	}
}

# A type of the compartment must name the resident through one of its elements.
_in_compartment(resource, i) if {
	paths := classification.patient_compartment[resource.resourceType]
	some path in paths
	some ref in _values_at(resource, path)
	_names_resident(ref, i)
}

_in_compartment(resource, _) if not classification.patient_compartment[resource.resourceType]

# Values at a path of one or two elements, through lists.
_values_at(resource, [field]) := _as_list(resource[field])

_values_at(resource, [field, sub]) := [value |
	some element in _as_list(resource[field])
	some value in _as_list(element[sub])
]

default _as_list(_) := []

_as_list(value) := value if is_array(value)

_as_list(value) := [value] if is_object(value)

# -- GP sources ------------------------------------------------------------------------

_gp_reference_fields := {field | some field in classification.gp_reference_fields}

_gp_sourced(resource, _) if classify.gp_meta_source(resource)

_gp_sourced(resource, i) if {
	some field, value in resource
	field in _gp_reference_fields
	some element in _as_list(value)
	some ref in _source_references(element)
	_gp_reference(ref, i)
}

_source_references(element) := [ref | some ref in [element, object.get(element, "actor", null)]; _is_reference(ref)]

_gp_reference(ref, i) if {
	some target in targets(ref, i)
	_gp_target(_target_resource(target, i), _context(target, i))
}

# A source the record does not hold (an Organization, a PractitionerRole, or a reference
# whose type cannot be told, such as an unknown urn:uuid): its source cannot be known, so
# it counts as GP-sourced (the most restrictive source). A person it names alone
# (Practitioner, RelatedPerson, Patient) says nothing about an organisation.
_gp_reference(ref, i) if {
	count(targets(ref, i)) == 0
	not _names_person(ref)
}

_gp_target(resource, _) if classify.gp_practice(resource)

_gp_target(resource, i) if {
	resource.resourceType == "PractitionerRole"
	some target in targets(resource.organization, i)
	classify.gp_practice(_target_resource(target, i))
}

# The top-level resource a target's own references are resolved in.
_context(["entry", j], _) := j

_context(["contained", _], i) := i
