# The redaction asked with the facts of resources (facts.rego) instead of the resources:
# the sidecar's facts cache (sidecar/policy.py). The fixtures are redact_test.rego's.
package lcr.redact_test

import data.lcr.config
import data.lcr.redact

# -- facts given instead of resources (the sidecar's facts cache) -------------------------

# The record of the tests above with contained parts, GP sources and free text.
_facts_record := array.concat(_record, [
	_encounter_containing(
		{"resourceType": "Condition", "id": "c1", "subject": _me, "code": _cc(_sct, "58214004")},
		{"diagnosis": [{"condition": {"reference": "#c1", "display": "Schizophrenia"}}]},
	),
	object.union(_flag, {"id": "f2", "note": [{"text": "falls"}], "author": {"reference": "Organization/gp1"}}),
])

# Asked again with the facts (and free text) the first answer read, and no resources.
_with_facts(level, resources) := [first, again] if {
	question := object.union(_input(level, resources), {"return_facts": true})
	first := redact.result with input as question # regal ignore:with-outside-test-context,external-reference

	# regal ignore:with-outside-test-context,external-reference
	again := redact.result with input as object.union(question, {
		"resources": [null | some _ in resources],
		"facts": first.facts,
		"free_text": first.free_text,
	})
}

test_facts_stand_in_for_their_resources if {
	every level, _ in config.access_levels {
		_same_answer_from_facts(level)
	}
}

_same_answer_from_facts(level) if {
	[first, again] := _with_facts(level, _facts_record)
	[again.sections, again.keep, again.edits] == [first.sections, first.keep, first.edits]
	count([facts | some facts in again.facts; facts != null]) == 0 # nothing read again
}

test_facts_and_resources_mixed if {
	[first, _] := _with_facts("senior_carer", _facts_record)
	question := object.union(_input("senior_carer", _facts_record), {
		"facts": array.concat(array.slice(first.facts, 0, 3), [null | some _ in array.slice(first.facts, 3, 100)]),
		"return_facts": true,
	})
	again := redact.result with input as question
	[again.sections, again.keep, again.edits] == [first.sections, first.keep, first.edits]
	again.free_text_shown == false
	count([f | some f in again.facts; f != null]) == count(_facts_record) - 3
}

test_free_text_needed_and_neither_given_nor_resource_fails_closed if {
	[first, _] := _with_facts("senior_carer", _facts_record)
	question := object.union(_input("senior_carer", _facts_record), {
		"resources": [null | some _ in _facts_record],
		"facts": first.facts,
	})
	result := redact.result with input as question
	count(result.edits) < count(_facts_record) # the sidecar refuses an answer of the wrong shape
}

test_neither_facts_nor_resource_reads_nothing if {
	result := redact.result with input as object.union(_input("registered_manager", [_patient]), {"resources": [null]})
	result == {"sections": [], "keep": [], "edits": []}
}

test_facts_of_another_shape_are_not_read if {
	[first, _] := _with_facts("registered_manager", [_patient, _flag])
	broken := object.remove(first.facts[1], ["references"])
	question := object.union(_input("registered_manager", [_patient, _flag]), {
		"resources": [null, null],
		"facts": [first.facts[0], broken],
	})
	result := redact.result with input as question
	result == {"sections": [], "keep": [], "edits": []}
	with_resource := redact.result with input as object.union(question, {"resources": [null, _flag]})
	with_resource.keep == [true, true]
}
