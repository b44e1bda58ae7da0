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
	_keys_present(facts, _facts_keys)
	is_array(facts.identifiers)
	is_array(facts.uris)
	is_array(facts.references)
	_part_shaped(facts.own)
	is_array(facts.contained)
	every part in facts.contained {
		_part_shaped(part)
	}
}

# The keys facts_of writes (constants: built once per question).
_facts_keys := {"resourceType", "id", "key", "shaped", "own", "contained", "identifiers", "uris", "references"}

_part_keys := {
	"resourceType", "id", "supporting", "sections", "gp_sections", "taints", "unreadable", "refs",
	"local_refs", "compartment", "gp_meta", "gp_refs", "gp_practice", "organization",
}

_part_shaped(part) if {
	_keys_present(part, _part_keys)
	is_array(part.refs)
	is_array(part.local_refs)
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

default _free_text_shown_fact := false

_free_text_shown_fact if _free_text_shown

_free_text_shown if {
	every section in classification.free_text.shown_when_permitted {
		section in _permitted
	}
}

_set(values) := {value | some value in values}

# -- record-level facts of every resource, each computed once per question ------------------

# What each resource itself (without its contained ones) names, as sets of resource
# indexes built in one pass over the record each: another person (_own_other), the
# resident in a compartment element or no compartment (_own_in_compartment), a GP source
# (_own_gp). Contained parts are read one by one (_part_shown).
# regal ignore:prefer-set-or-object-rule
_own_other := {i | some i, facts in _facts; some ref in facts.own.refs; _naming_other[ref]} | {i |
	some i, facts in _facts
	some ref in facts.own.local_refs
	_other_person(ref, i)
}

# regal ignore:prefer-set-or-object-rule
_own_in_compartment := ({i | some i, facts in _facts; facts.own.compartment == null} | {i |
	some i, facts in _facts
	some ref in facts.own.compartment
	_naming_resident[ref]
}) | {i |
	some i, facts in _facts
	some ref in facts.own.compartment
	not _record_refs[ref] # a local one
	_names_resident(ref, i)
}

# regal ignore:prefer-set-or-object-rule
_own_gp := ({i | some i, facts in _facts; facts.own.gp_meta} | {i |
	some i, facts in _facts
	some ref in facts.own.gp_refs
	_naming_gp[ref]
}) | {i |
	some i, facts in _facts
	some ref in facts.own.gp_refs
	not _record_refs[ref] # a local one
	_gp_reference(ref, i)
}

# Sections of each resource itself, its GP source included.
# regal ignore:prefer-set-or-object-rule
_own_sections := [_own_sections_at(i, facts.own) | some i, facts in _facts]

_own_sections_at(i, own) := _set(own.sections) | _set(own.gp_sections) if i in _own_gp

else := _set(own.sections)

# Entries each resource itself references.
# regal ignore:prefer-set-or-object-rule
_own_targets := [_entries_referenced(facts.own.refs) | some facts in _facts]

# A local Reference ("#id", not among refs) names a contained resource, never an entry.
_entries_referenced(references) := {j |
	some ref in references
	some j in _entries_of[ref]
}

# regal ignore:prefer-set-or-object-rule
_entries_of := {ref: {target[1] | some target in _targets_of[ref]; target[0] == "entry"} | some ref in _record_refs}

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
	_only_this_resident(part, i)
	count(sections & _allowed) > 0
	count(sections - _permitted) == 0
}

# A supporting part or the resident's header may leave when nothing in it needs more.
_taint_free(part) if {
	not part.unreadable
	count(_set(part.taints) - _permitted) == 0
}

# -- which resources leave ---------------------------------------------------------------

# As _part_shown, for every resource itself at once.
# regal ignore:prefer-set-or-object-rule
_clinical_kept := {i |
	some i, facts in _facts
	not i in _headers
	facts.shaped
	i in _own_in_compartment
	not facts.own.supporting
	facts.own.resourceType != "Patient"
	not facts.own.unreadable
	not i in _own_other
	count(_own_sections[i] & _allowed) > 0
	count(_own_sections[i] - _permitted) == 0
}

_header_kept contains i if {
	count(_allowed) > 0
	some i in _headers
	_facts[i].shaped
	_taint_free(_facts[i].own)
}

# Supporting resources referenced by what leaves, and those they reference in turn.
# regal ignore:prefer-set-or-object-rule
_support_kept_1 := {j | some i in (_clinical_kept | _header_kept); some j in _own_targets[i]; j in _support_ok}

# regal ignore:prefer-set-or-object-rule
_support_kept_2 := {j | some i in _support_kept_1; some j in _own_targets[i]; j in _support_ok}

# regal ignore:prefer-set-or-object-rule
_support_ok := {j |
	some j, facts in _facts
	facts.own.supporting
	facts.shaped
	_taint_free(facts.own)
	not j in _own_other
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
		[["contained", k] | some k in _removed_at[i]],
		_free_text_paths(i),
	),
	"mask": _mask_paths(i),
	"parts": [_contained_section(i, k) | some k, _ in _facts[i].contained; not _removed_at[i][k]],
} if {
	i in _kept
}

# Contained resources of each kept resource that may not leave with it: {i: {k}}.
# regal ignore:prefer-set-or-object-rule
_removed_at := {i: _removed_in(i) | some i in _kept}

_removed_in(i) := {k |
	some k, part in _facts[i].contained
	not _contained_shown(part, i)
}

_contained_shown(part, i) if {
	_in_compartment(part, i)
	_part_shown(part, _part_sections(part, i), i)
}

_contained_shown(part, i) if {
	part.supporting
	_taint_free(part)
	_only_this_resident(part, i)
}

_contained_section(i, k) := "supporting" if _facts[i].contained[k].supporting

else := _primary(_part_sections(_facts[i].contained[k], i))

# References whose target does not leave (withheld, removed or not in the record) are
# masked, so a reference never reveals what was withheld.
_mask_paths(i) := [path |
	some [path, ref] in _facts[i].references
	not _kept_refs[ref]
	not _in_removed(path, i)
	not _local_kept(ref, i)
]

_in_removed(path, i) if {
	path[0] == "contained"
	_removed_at[i][path[1]]
}

# A Reference other than a local one resolves the same in every resource: whether it is
# kept is decided once per distinct Reference of the record (_kept_refs); a local one
# ("#id") in the resource that holds it.
_local_kept(ref, i) if {
	_local(ref)
	_reference_kept_in(ref, i)
}

# regal ignore:prefer-set-or-object-rule
_kept_refs := {ref | some ref in _record_refs; _reference_kept_in(ref, -1)}

_reference_kept_in(ref, i) if {
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
	not _removed_at[i][k]
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
