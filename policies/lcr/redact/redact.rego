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
#
#   Two steps: the facts of each resource (facts.rego: its classification, references,
#   free text, read from the resource alone), then the record-level rules below, which
#   read only those facts. The sidecar may send the facts this policy computed for a
#   resource before, under the same revision, instead of the resource.
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
#   When the input asks for them (`return_facts`): `facts[i]`, the facts of resource i
#   computed in this question (null when they were given); `free_text[i]`, the free text
#   of resource i when this question read it (null otherwise); and `free_text_shown`,
#   whether this caller is shown free text (then no resource's free text is read).
# entrypoint: true
result := object.union(
	{
		"sections": [_section(i) | some i, _ in _facts],
		"keep": [_is_kept(i) | some i, _ in _facts],
		"edits": [_edits(i) | some i, _ in _facts],
	},
	_facts_returned,
)

default _facts_returned := {}

_facts_returned := {
	"facts": [_computed(i) | some i, _ in _facts],
	"free_text": [_free_text_read(i) | some i, _ in _facts],
	"free_text_shown": _free_text_shown_fact,
} if {
	input.return_facts == true
}

_computed(i) := null if _shaped_facts[i]

else := _facts[i]

_free_text_read(i) := _free_text_computed[i] if not _free_text_given(i)

else := null

_free_text_given(i) if is_array(input.free_text[i])

# -- input ---------------------------------------------------------------------------

# Each resource's facts: given (computed by this policy for that resource before), or
# computed from the resource. Anything else in the list and the record is not read.
default _facts := []

_facts := [_facts_at(i) | some i, _ in input.resources] if {
	is_array(input.resources)
	every i, _ in input.resources {
		_given(i)
	}
}

_given(i) if is_object(input.resources[i])

_given(i) if _shaped_facts[i]

_facts_at(i) := input.facts[i] if _shaped_facts[i]

else := facts_of(input.resources[i])

# The given facts that have the shape facts_of writes (others are not read: the resource
# itself is read instead, or the question reads nothing).
_shaped_facts contains i if {
	some i, facts in input.facts
	_keys_present(facts, {"resourceType", "id", "key", "shaped", "own", "contained", "identifiers", "uris", "references"})
	is_array(facts.identifiers)
	is_array(facts.uris)
	is_array(facts.references)
	_part_shaped(facts.own)
	is_array(facts.contained)
	every part in facts.contained {
		_part_shaped(part)
	}
}

_part_shaped(part) if {
	_keys_present(part, {
		"resourceType", "id", "supporting", "sections", "gp_sections", "taints", "unreadable", "refs",
		"compartment", "gp_meta", "gp_refs", "gp_practice", "organization",
	})
	is_array(part.refs)
	is_array(part.gp_refs)
}

_keys_present(value, keys) if {
	is_object(value)
	count(keys - object.keys(value)) == 0
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

default _free_text_shown_fact := false

_free_text_shown_fact if _free_text_shown

_free_text_shown if {
	every section in classification.free_text.shown_when_permitted {
		section in _permitted
	}
}

_set(values) := {value | some value in values}

# -- record-level facts of every resource, each computed once per question ------------------

# Sections of each resource itself (without its contained ones), its GP source included.
# regal ignore:prefer-set-or-object-rule
_own_sections := [_part_sections(facts.own, i) | some i, facts in _facts]

# Entries each resource itself references.
# regal ignore:prefer-set-or-object-rule
_own_targets := [_entries_referenced(facts.own.refs, i) | some i, facts in _facts]

_entries_referenced(references, i) := {target[1] |
	some ref in references
	some target in _ref_targets(ref, i)
	target[0] == "entry"
}

# -- classification of each part ----------------------------------------------------------

# Sections of one part (a resource without its contained ones, or a contained resource).
_part_sections(part, i) := _set(part.sections) | _set(part.gp_sections) if _gp_sourced(part, i)

else := _set(part.sections)

# A part that may leave: readable, only this resident, positively classified into sections
# of which at least one is allowed and all are permitted.
_part_shown(part, sections, i) if {
	not part.supporting
	part.resourceType != "Patient" # only the resident's own, as the header

	not part.unreadable
	_only_this_resident(part.refs, i)
	count(sections & _allowed) > 0
	count(sections - _permitted) == 0
}

# A supporting part or the resident's header may leave when nothing in it needs more.
_taint_free(part) if {
	not part.unreadable
	count(_set(part.taints) - _permitted) == 0
}

# -- which resources leave ---------------------------------------------------------------

_clinical_kept contains i if {
	some i, facts in _facts
	not i in _headers
	facts.shaped
	_in_compartment(facts.own, i)
	_part_shown(facts.own, _own_sections[i], i)
}

_header_kept contains i if {
	count(_allowed) > 0
	some i in _headers
	_facts[i].shaped
	_taint_free(_facts[i].own)
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
	facts := _facts[j]
	facts.own.supporting
	facts.shaped
	_taint_free(facts.own)
	_only_this_resident(facts.own.refs, j)
}

_is_kept(i) if i in _kept

else := false

_kept := ((_clinical_kept | _header_kept) | _support_kept_1) | _support_kept_2

# -- sections counted --------------------------------------------------------------------

_section(i) := "patient" if i in _headers

else := "supporting" if _facts[i].own.supporting

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
	"parts": [_contained_section(i, k) | some k, _ in _facts[i].contained; not [i, k] in _removed_pairs],
} if {
	i in _kept
}

# Contained resources that may not leave with their container, as [i, k] pairs.
# regal ignore:prefer-set-or-object-rule
_removed_pairs := {[i, k] |
	some i in _kept
	some k, part in _facts[i].contained
	not _contained_shown(part, i)
}

_removed_contained(i) := {pair[1] | some pair in _removed_pairs; pair[0] == i}

_contained_shown(part, i) if {
	_in_compartment(part, i)
	_part_shown(part, _part_sections(part, i), i)
}

_contained_shown(part, i) if {
	part.supporting
	_taint_free(part)
	_only_this_resident(part.refs, i)
}

_contained_section(i, k) := "supporting" if _facts[i].contained[k].supporting

else := _primary(_part_sections(_facts[i].contained[k], i))

# References whose target does not leave (withheld, removed or not in the record) are
# masked, so a reference never reveals what was withheld.
_mask_paths(i) := [path |
	some [path, ref] in _facts[i].references
	not _in_removed(path, i)
	not _reference_kept(ref, i)
]

_in_removed(path, i) if {
	path[0] == "contained"
	[i, path[1]] in _removed_pairs
}

_reference_kept(ref, i) if {
	found := _ref_targets(ref, i)
	count(found) > 0
	every target in found {
		_target_kept(target, i)
	}
	_identifier_consistent(ref)
}

_target_kept(["entry", j], _) if j in _kept

_target_kept(["contained", id], i) if {
	some k, part in _facts[i].contained
	part.id == id
	not [i, k] in _removed_pairs
}

# -- free text and extensions ------------------------------------------------------------

_free_text_paths(_) := [] if _free_text_shown

# The resource's free text (facts.rego), but for what lies in a removed contained resource:
# given (read by this policy from that resource before), or read from the resource.
_free_text_paths(i) := [path |
	some path in free_text
	not _in_removed(path, i)
] if {
	not _free_text_shown
	free_text := _free_text(i) # neither given nor readable: no edits, an answer the sidecar refuses
}

_free_text(i) := input.free_text[i] if _free_text_given(i)

else := _free_text_computed[i]

# Read once per kept resource that was sent whole.
# regal ignore:prefer-set-or-object-rule
_free_text_computed := {i: free_text_of(input.resources[i]) |
	not _free_text_shown
	some i in _kept
	is_object(input.resources[i])
}
