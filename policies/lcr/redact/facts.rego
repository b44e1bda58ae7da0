# The facts of one resource of a fetched record: everything the record-level rules of
# lcr.redact read about it, computed from the resource alone — no other resource, no
# caller, no input but the resource — so that the same resource always has the same facts
# under the same policy revision, and the sidecar may keep them (sidecar/policy.py).
package lcr.redact

import data.lcr.classification
import data.lcr.classify

# METADATA
# title: Facts of one resource
# description: |
#   What the redaction reads about one top-level resource: its type, id and key; whether
#   its contained resources are a list of resources (`shaped`); the facts of the resource
#   itself (`own`, without its contained ones) and of each contained one (`contained`, in
#   order; see _part_facts); its identifiers as "alias|value" and its own URIs (so
#   references to it resolve); every Reference in it with its path (`references`, for
#   masks). Sets are written as sorted arrays. Its free text is read apart
#   (free_text_of), only when the caller is not shown free text.
facts_of(resource) := {
	"resourceType": object.get(resource, "resourceType", null),
	"id": object.get(resource, "id", null),
	"key": _key_of(resource),
	"shaped": _shaped(resource),
	"own": _part_facts(
		own,
		array.concat([own], [node | some [path, node] in nodes; count(path) > 0; path[0] != "contained"]),
		[ref | some [path, ref] in references; not _in_contained(path)],
	),
	"contained": [_part_facts(part, _objects_in(part), _refs_in_contained(references, k)) |
		some k, part in resource.contained
		is_object(part)
	],
	"identifiers": [_identifier_key(identifier) | some identifier in resource.identifier],
	"uris": [_canonical_url(identifier.value) |
		some identifier in resource.identifier
		identifier.system == "urn:ietf:rfc:3986" # the resource's own URI (FHIR R4 Identifier)
		is_string(identifier.value)
	],
	"references": references,
} if {
	# The resource itself is read without its contained ones; [path, object] pairs of the
	# whole resource, contained resources included.
	own := object.remove(resource, ["contained"])
	nodes := [[path, node] | walk(resource, [path, node]); is_object(node)]
	references := _references(nodes)
}

_in_contained(path) if path[0] == "contained"

_refs_in_contained(references, k) := [ref |
	some [path, ref] in references
	path[0] == "contained"
	path[1] == k
]

# METADATA
# title: Facts of one part
# description: |
#   A part is a resource without its contained ones, or one contained resource. `sections`:
#   what it is classified into, but for its GP source (`gp_sections`: added when the
#   record shows it GP-sourced: `gp_meta`, or one of `gp_refs` resolves to a GP practice);
#   `taints`: sections its signals and labels need; `unreadable`; `refs`: its References
#   but local ones ("#id", in `local_refs`: they name what the container holds);
#   `compartment`: the References of its compartment elements
#   (null when its type is not in the compartment); `gp_practice` and `organization` (a
#   PractitionerRole's), for resolving other parts' GP sources.
_part_facts(part, objects, refs) := {
	"resourceType": object.get(part, "resourceType", null),
	"id": object.get(part, "id", null),
	"supporting": _is_supporting(part),
	"sections": sort(classify.own_sections(part, taints)),
	"gp_sections": sort(classify.gp_sections(part)),
	"taints": sort(taints),
	"unreadable": _unreadable(part, objects),
	"refs": [ref | some ref in refs; not _local_ref(ref)],
	"local_refs": [ref | some ref in refs; _local_ref(ref)],
	"compartment": _compartment_refs(part),
	"gp_meta": _gp_meta(part),
	"gp_refs": _gp_refs(part),
	"gp_practice": _gp_practice(part),
	"organization": _organization(part),
} if {
	taints := classify.taints(part, objects)
}

# Booleans as facts (a fact is written out, never left undefined).
_is_supporting(part) if _supporting(part)

else := false

_unreadable(part, objects) if classify.unreadable(part, objects)

else := false

_gp_meta(part) if classify.gp_meta_source(part)

else := false

_gp_practice(part) if classify.gp_practice(part)

else := false

_shaped(resource) if _contained_shaped(resource)

else := false

_key_of(resource) := key if {
	key := concat("/", [resource.resourceType, resource.id])
} else := null

_supporting(resource) if resource.resourceType in classification.supporting_resource_types

# contained, when present, is a list of resources (else its parts could not be read).
_contained_shaped(resource) if {
	contained := object.get(resource, "contained", [])
	is_array(contained)
	every part in contained {
		is_object(part)
	}
}

_objects_in(value) := [node | walk(value, [_, node]); is_object(node)]

_local_ref(ref) if startswith(ref.reference, "#")

# What the record-level rules read of a Reference.
_ref_fact(ref) := object.filter(ref, ["reference", "identifier", "type"])

# -- references in a part ----------------------------------------------------------------

# A Reference: an object with a reference string, or an identifier-only reference.
_is_reference(node) if is_string(node.reference)

_is_reference(node) if is_object(node.identifier)

# References among objects, as [path, Reference] pairs: an object with a reference string,
# or an identifier-only reference.
_references(objects) := array.concat(
	[[path, _ref_fact(node)] | some [path, node] in objects; is_string(node.reference)],
	[[path, _ref_fact(node)] | some [path, node] in objects; is_object(node.identifier); not node.reference],
)

# The compartment elements' values: a type of the compartment must name the resident
# through one of them.
_compartment_refs(part) := [_ref_fact(value) |
	some path in classification.patient_compartment[part.resourceType]
	some value in _values_at(part, path)
	is_object(value)
] if {
	classification.patient_compartment[part.resourceType]
} else := null

# Values at a path of one or two elements, through lists.
_values_at(resource, [field]) := _as_list(resource[field])

_values_at(resource, [field, sub]) := [value |
	some element in _as_list(resource[field])
	some value in _as_list(element[sub])
]

default _as_list(_) := []

_as_list(value) := value if is_array(value)

_as_list(value) := [value] if is_object(value)

_gp_reference_fields := {field | some field in classification.gp_reference_fields}

# The References in a part's source fields (custodian, author, ..., performer[].actor).
_gp_refs(part) := [_ref_fact(ref) |
	some field, value in part
	field in _gp_reference_fields
	some element in _as_list(value)
	some ref in _source_references(element)
]

_source_references(element) := [ref | some ref in [element, object.get(element, "actor", null)]; _is_reference(ref)]

_organization(part) := _ref_fact(part.organization) if {
	part.resourceType == "PractitionerRole"
	is_object(part.organization)
} else := null

# -- free text and extensions ------------------------------------------------------------

# METADATA
# title: Free text of one resource
# description: |
#   The paths of the free text and unknown extensions in one resource (contained ones
#   included), removed for callers not shown free text. Read from the resource alone, so
#   the sidecar may keep them per policy revision like its facts.
#   Order: by kind (narrative, unstructured strings, unreadable codings, unknown
#   extensions), each in walk order; the sidecar applies removals in its own order.
free_text_of(resource) := array.flatten([
	[parent |
		some [parent, node] in inner
		object.get(node, "div", null) != null # narrative, whatever shape its div has
		not _kept_under(parent, resource)
	],
	[array.concat(parent, [key]) |
		some [parent, node] in objects
		some key, value in node
		_text_value(value)
		not _structured(key, value, node)
		not _kept_under(parent, resource)
	],
	[parent | some [parent, node] in inner; _unrecognised_coding(node)],
	[array.concat(parent, ["extension", k]) |
		some [parent, node] in objects
		some k, extension in node.extension
		not extension.url in classification.known_extensions
	],
]) if {
	# Every object with its path, read once per kind; whether it lies under a kept element
	# (a name, an address, a dosage: only unknown extensions and unreadable codings go) is
	# asked only of what would go.
	objects := [[parent, node] | walk(resource, [parent, node]); is_object(node)]
	inner := [[parent, node] | some [parent, node] in objects; count(parent) > 0] # but the resource itself
}

# Whether the object at parent lies under one of its resource type's kept elements
# (data free_text.kept_under), at the resource's top level or a contained one's.
_kept_under(parent, resource) if {
	parent[0] in object.get(classification.free_text.kept_under, resource.resourceType, [])
} else if {
	parent[0] == "contained"
	parent[2] in object.get(classification.free_text.kept_under, resource.contained[parent[1]].resourceType, [])
} else := false

_text_value(value) if is_string(value)

_text_value(value) if {
	is_array(value)
	count(value) > 0
	every item in value {
		is_string(item)
	}
}

_structured(key, value, _) if {
	is_string(value)
	_structured_strings[key]
}

_structured(key, value, _) if {
	is_array(value)
	_structured_lists[key]
}

_structured(key, value, _) if {
	_code_elements[key]
	_code_shaped(value)
}

_structured(key, value, _) if {
	_dated(key)
	is_string(value)
	regex.match(classification.free_text.date_pattern, value)
}

# A coding's code and display, and a Quantity's unit, when the policy can read the code;
# a Quantity's unit code.
_structured("code", _, node) if classify.recognised(node)

_structured("display", _, node) if classify.recognised(node)

_structured("unit", _, node) if classify.recognised(node)

# An identifier's value in a system the policy knows (an NHS number, an ODS code).
_structured("value", value, node) if {
	is_string(value)
	classify.alias(node)
}

_structured("code", value, node) if {
	is_string(value)
	_quantity(node)
}

# Reference.type names a resource type.
_structured("type", value, node) if {
	is_string(node.reference)
	regex.match(`^[A-Z][A-Za-z]+$`, value)
}

_structured(key, value, node) if {
	key in object.get(classification.free_text.codes_by_type, node.resourceType, [])
	_code_shaped(value)
}

_code_shaped(value) if {
	is_string(value)
	regex.match(classification.free_text.code_pattern, value)
}

_code_shaped(value) if {
	is_array(value)
	every item in value {
		regex.match(classification.free_text.code_pattern, item)
	}
}

_dated(key) if _date_elements[key]

_dated(key) if regex.match(`(Date|DateTime|Instant)$`, key)

# regal ignore:prefer-set-or-object-rule
_structured_strings := {key: true | some key in classification.free_text.structured}

# regal ignore:prefer-set-or-object-rule
_structured_lists := {key: true | some key in classification.free_text.structured_lists}

# regal ignore:prefer-set-or-object-rule
_code_elements := {key: true | some key in classification.free_text.codes}

# regal ignore:prefer-set-or-object-rule
_date_elements := {key: true | some key in classification.free_text.dates}

# A coding the policy cannot read (unknown system, or a code not shaped like its
# system's codes): its code is as opaque as free text. A Quantity (a numeric value with
# its unit's code) is not a coding.
_unrecognised_coding(node) if {
	is_string(node.code)
	not _quantity(node)
	not classify.recognised(node)
}

_quantity(node) if is_number(node.value)
