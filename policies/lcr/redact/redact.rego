# METADATA
# title: Redaction of a fetched record
# description: |
#   Which parts of the fetched FHIR record may leave, given the sections the access
#   decision allowed. Every resource and every resource contained in one is classified
#   on its own; a part leaves only when it was positively classified into sections the
#   caller may see. References are resolved in every FHIR form (relative, absolute,
#   urn:uuid, contained, identifier-only) to apply the Patient compartment, find GP
#   sources and mask references to what does not leave. Asked only after an allow;
#   still fails closed on its own.
package lcr.redact

import data.lcr.classification
import data.lcr.classify

# METADATA
# title: Redaction result
# description: |
#   Parallel arrays, one entry per input resource, in order. `sections[i]`: the section
#   resource i is counted under ("patient" for the resident's Patient, "supporting" for a
#   supporting resource, null when unclassified); `keep[i]`: whether it may leave;
#   `edits[i]`: for a kept resource, the element paths to `remove` and the Reference
#   paths to `mask`, and the sections of the contained resources that stay (`parts`).
# entrypoint: true
result := {
	"sections": [_section(i) | some i, _ in _resources],
	"keep": [_is_kept(i) | some i, _ in _resources],
	"edits": [_edits(i) | some i, _ in _resources],
}

# -- input ---------------------------------------------------------------------------

default _resources := []

_resources := [resource | some resource in input.resources; is_object(resource)] if {
	is_array(input.resources)
	every resource in input.resources {
		is_object(resource)
	}
}

_allowed contains section if {
	some section in input.allowed_sections
	is_string(section)
}

# Everything the caller's level permits. Absent, it is the allowed sections themselves.
_permitted := {section |
	some section in input.permitted_sections
	is_string(section)
} if {
	is_array(input.permitted_sections)
} else := _allowed

default _patient_id := null

_patient_id := input.patient.id if is_string(input.patient.id)

default _nhs_number := null

_nhs_number := input.patient.nhs_number if is_string(input.patient.nhs_number)

default _base := null

_base := lower(trim_suffix(trim_space(input.base_url), "/")) if is_string(input.base_url)

_full_url(i) := input.full_urls[i] if is_string(input.full_urls[i])

_free_text_shown if {
	every section in classification.free_text.shown_when_permitted {
		section in _permitted
	}
}

# -- facts of every resource, each computed once per question -------------------------------

# Each resource itself, without its contained resources.
# regal ignore:prefer-set-or-object-rule
_owns := [_own(resource) | some resource in _resources]

_own(resource) := object.remove(resource, ["contained"])

# The objects in each resource itself (the only nodes classification reads: codings,
# references, labels and extensions are all objects). Walked without paths, which OPA
# does not build then; paths are walked only for what leaves (_kept_objects).
# regal ignore:prefer-set-or-object-rule
_own_objects := [_objects_in(own) | some own in _owns]

_objects_in(value) := [node | walk(value, [_, node]); is_object(node)]

# The objects of contained resource k of resource i.
_contained_objects(i, k) := _objects_in(_resources[i].contained[k])

# [path, object] pairs of each resource that leaves, for its edits.
# regal ignore:prefer-set-or-object-rule,walk-no-path
_kept_objects := {i: [[path, node] | walk(_resources[i], [path, node]); is_object(node)] | some i in _kept}

# contained, when present, is a list of resources (else its parts could not be read).
_contained_shaped(resource) if {
	contained := object.get(resource, "contained", [])
	is_array(contained)
	every part in contained {
		is_object(part)
	}
}

# References in the resource itself.
# regal ignore:prefer-set-or-object-rule
_own_references := [_refs(objects) | some objects in _own_objects]

# Sections of each resource itself (without its contained ones).
# regal ignore:prefer-set-or-object-rule
_own_sections := [_part_sections(own, _own_objects[i], i) | some i, own in _owns]

# Entries each resource itself references.
# regal ignore:prefer-set-or-object-rule
_own_targets := [_entries_referenced(references, i) | some i, references in _own_references]

_entries_referenced(references, i) := {target[1] |
	some ref in references
	some target in targets(ref, i)
	target[0] == "entry"
}

# -- classification of each part ----------------------------------------------------------

_supporting(resource) if resource.resourceType in classification.supporting_resource_types

# Sections of one part (a resource without its contained ones, or a contained resource).
_part_sections(resource, objects, i) := classify.sections_of(resource, objects, _gp_bool(resource, i))

_gp_bool(resource, i) if _gp_sourced(resource, i)

else := false

# A part that may leave: readable, only this resident, positively classified into sections
# of which at least one is allowed and all are permitted.
_part_shown(resource, objects, references, sections, i) if {
	not _supporting(resource)
	resource.resourceType != "Patient" # only the resident's own, as the header

	not classify.unreadable(resource, objects)
	_only_this_resident(references, i)
	count(sections & _allowed) > 0
	count(sections - _permitted) == 0
}

# A supporting part or the resident's header may leave when nothing in it needs more.
_taint_free(resource, objects) if {
	not classify.unreadable(resource, objects)
	count(classify.taints(resource, objects) - _permitted) == 0
}

# -- which resources leave ---------------------------------------------------------------

_clinical_kept contains i if {
	some i, resource in _resources
	not i in _headers
	_contained_shaped(resource)
	own := _owns[i]
	_in_compartment(own, i)
	_part_shown(own, _own_objects[i], _own_references[i], _own_sections[i], i)
}

_header_kept contains i if {
	count(_allowed) > 0
	some i in _headers
	_contained_shaped(_resources[i])
	_taint_free(_owns[i], _own_objects[i])
}

# Supporting resources referenced by what leaves, and those they reference in turn.
_support_kept_1 contains j if {
	some i in (_clinical_kept | _header_kept)
	some j in _own_targets[i]
	_support_ok(j)
}

_support_kept_2 contains j if {
	some i in _support_kept_1
	some j in _own_targets[i]
	_support_ok(j)
}

_support_ok(j) if {
	resource := _resources[j]
	_supporting(resource)
	_contained_shaped(resource)
	_taint_free(_owns[j], _own_objects[j])
	_only_this_resident(_own_references[j], j)
}

_is_kept(i) if i in _kept

else := false

_kept := ((_clinical_kept | _header_kept) | _support_kept_1) | _support_kept_2

# -- sections counted --------------------------------------------------------------------

_section(i) := "patient" if i in _headers

else := "supporting" if _supporting(_resources[i])

else := _primary(_own_sections[i])

default _primary(_) := null

_primary(sections) := classify.primary(sections)

# -- edits to a kept resource ------------------------------------------------------------

_edits(i) := {"remove": [], "mask": [], "parts": []} if not i in _kept

_edits(i) := {
	"remove": array.concat(
		[["contained", k] | some k in _removed_contained(i)],
		_free_text_paths(i),
	),
	"mask": _mask_paths(i),
	"parts": [_contained_section(i, k) | some k, _ in _as_list(_resources[i].contained); not [i, k] in _removed_pairs],
} if {
	i in _kept
}

# Contained resources that may not leave with their container, as [i, k] pairs.
# regal ignore:prefer-set-or-object-rule
_removed_pairs := {[i, k] |
	some i in _kept
	some k, contained in _as_list(_resources[i].contained)
	not _contained_shown(contained, _contained_objects(i, k), i)
}

_removed_contained(i) := {pair[1] | some pair in _removed_pairs; pair[0] == i}

_contained_shown(contained, objects, i) if {
	_in_compartment(contained, i)
	_part_shown(contained, objects, _refs(objects), _part_sections(contained, objects, i), i)
}

_contained_shown(contained, objects, i) if {
	_supporting(contained)
	_taint_free(contained, objects)
	_only_this_resident(_refs(objects), i)
}

_contained_section(i, k) := "supporting" if _supporting(_resources[i].contained[k])

else := _primary(_part_sections(_resources[i].contained[k], _contained_objects(i, k), i))

# References whose target does not leave (withheld, removed or not in the record) are
# masked, so a reference never reveals what was withheld.
_mask_paths(i) := [path |
	some [path, ref] in _references(_kept_objects[i])
	not _in_removed(path, i)
	not _reference_kept(ref, i)
]

_in_removed(path, i) if {
	path[0] == "contained"
	[i, path[1]] in _removed_pairs
}

_reference_kept(ref, i) if {
	found := targets(ref, i)
	count(found) > 0
	every target in found {
		_target_kept(target, i)
	}
	_identifier_consistent(ref)
}

_target_kept(["entry", j], _) if j in _kept

_target_kept(["contained", id], i) if {
	some k, contained in _resources[i].contained
	contained.id == id
	not [i, k] in _removed_pairs
}

# -- free text and extensions ------------------------------------------------------------

_free_text_paths(_) := [] if _free_text_shown

# Read from the objects that hold free text: set operations on each object's keys.
_free_text_paths(i) := [path |
	some [parent, node] in _kept_objects[i]
	not _in_removed(parent, i)
	some path in _free_text_in(parent, node, _kept_under(parent, i))
] if {
	not _free_text_shown
}

# Under a kept element (a name, an address, a dosage) only unknown extensions and
# unreadable codings go.
_free_text_in(parent, node, true) := array.concat(_unrecognised_coding(parent, node), _unknown_extensions(parent, node))

_free_text_in(parent, node, false) := array.flatten([
	_narrative(parent, node), _unstructured(parent, node),
	_unrecognised_coding(parent, node), _unknown_extensions(parent, node),
])

# Whether the object at parent lies under one of its resource type's kept elements
# (data free_text.kept_under), at the resource's top level or a contained one's.
_kept_under(parent, i) if {
	parent[0] in object.get(classification.free_text.kept_under, _resources[i].resourceType, [])
} else if {
	parent[0] == "contained"
	parent[2] in object.get(classification.free_text.kept_under, _resources[i].contained[parent[1]].resourceType, [])
} else := false

# Narrative (text.div, Composition.section.text), whatever shape its div has.
_narrative(parent, node) := [parent | count(parent) > 0; object.get(node, "div", null) != null]

# Strings (and lists of strings) the policy does not know to be structured: description,
# title, text, note, valueString, Reference.display, an attachment's data, a code in the
# wrong place or shape, a date that is not one, ...
_unstructured(parent, node) := [array.concat(parent, [key]) |
	some key, value in node
	_text_value(value)
	not _structured(key, value, node)
]

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

_dated(key) if endswith(key, "Date")

_dated(key) if endswith(key, "DateTime")

_dated(key) if endswith(key, "Instant")

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
_unrecognised_coding(parent, node) := [parent |
	count(parent) > 0
	is_string(node.code)
	not _quantity(node)
	not classify.recognised(node)
]

_quantity(node) if is_number(node.value)

# Extensions the policy does not know.
_unknown_extensions(parent, node) := [array.concat(parent, ["extension", k]) |
	some k, extension in node.extension
	not extension.url in classification.known_extensions
]
