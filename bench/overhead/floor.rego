# What OPA's evaluator costs at the least for a record, whatever the policy: the floor
# the redaction's own evaluation is compared with (bench/overhead/rego_floor.py). Not
# part of any bundle.
package bench.floor

# Each resource touched once (one comprehension over the record).
touched := [n | some resource in input.resources; n := count(resource)]

# Each resource walked: what any classifier that reads a coding wherever it is must do.
walked := [n | some resource in input.resources; n := count([node | walk(resource, [_, node])])]

# Each resource's codings found (objects with a string code), as reading signals needs.
codings := [n |
	some resource in input.resources
	n := count([node | walk(resource, [_, node]); is_string(node.code)])
]

# Eight checks a resource over its facts (given, as the sidecar's facts cache sends them):
# about the least a record-level rule set reads of each resource.
lean := [_kept(facts) | some facts in input.facts]

_allowed := {section | some section in input.allowed_sections}

_others := {ref |
	some facts in input.facts
	some ref in facts.own.refs
	ref.reference == "Patient/someone-else"
}

_kept(facts) if {
	facts.shaped
	not facts.own.supporting
	facts.own.resourceType != "Patient"
	not facts.own.unreadable
	some section in facts.own.sections
	_allowed[section]
	every other in facts.own.sections {
		_allowed[other]
	}
	count({ref | some ref in facts.own.refs} & _others) == 0
} else := false
