# METADATA
# title: Section classification of one FHIR R4 resource
# description: |
#   Which LCR sections one resource (a top-level resource without its contained ones, or
#   one contained resource) belongs to, and whether anything in it makes it unreadable to
#   the policy (a security label or modifierExtension it does not know). The code lists
#   live in data.lcr.classification (docs/sections.md is the human-readable contract);
#   this package knows where in a resource to look and how codes are spelled. Record-level
#   facts (references, GP sources, the Patient compartment) are in lcr.redact.
package lcr.classify

import data.lcr.classification

# METADATA
# title: Canonical code system
# description: |
#   A code system URI as compared: trimmed, lower case, without the http:// or https://
#   scheme and without a trailing "/" (so OIDs, STU3 and R4 addresses all meet the
#   spellings listed in data.lcr.classification.systems).
canonical_system(system) := trim_suffix(trim_prefix(trim_prefix(lower(trim_space(system)), "https://"), "http://"), "/")

# Canonical system spelling -> alias (complete rule: built once per query).
# regal ignore:prefer-set-or-object-rule
_aliases := {canonical_system(spelling): alias |
	some alias, spellings in classification.systems
	some spelling in spellings
}

# METADATA
# title: Code system alias of a coding
# description: The alias (sct, loinc, act_code, ...) of a coding's system; undefined when unknown or absent.
alias(coding) := system_alias if {
	system_alias := _exact_aliases[coding.system]
} else := _aliases[canonical_system(coding.system)] if is_string(coding.system)

# Spellings exactly as listed: most codings need no canonical form.
# regal ignore:prefer-set-or-object-rule
_exact_aliases := {spelling: alias |
	some alias, spellings in classification.systems
	some spelling in spellings
}

# METADATA
# title: Recognised coding
# description: |
#   A coding with a code in a code system the policy knows, shaped like that system's
#   codes where data.lcr.classification.code_patterns says how.
recognised(coding) if {
	is_string(coding.code)
	system_alias := alias(coding)
	_shaped(system_alias, trim_space(coding.code))
}

_shaped(system_alias, code) if regex.match(classification.code_patterns[system_alias], code)

_shaped(system_alias, _) if not classification.code_patterns[system_alias]

# METADATA
# title: Sections of a resource
# description: |
#   Every section the resource matches: by type, MedicationRequest intent, coded
#   elements, sensitive signals anywhere in it, security labels, and GP source (computed
#   by the caller from the record's references). Empty when unclassified. `nodes` is
#   the resource's walk ([path, value] pairs).
# scope: document
default sections_of(_, _, _) := set()

sections_of(resource, nodes, gp_sourced) := own_sections(resource, taints(resource, nodes)) | _gp_part(
	resource,
	gp_sourced,
)

_gp_part(resource, true) := gp_sections(resource)

_gp_part(_, false) := set()

# METADATA
# title: Sections of a resource but for its source
# description: |
#   The sections the resource matches by type, MedicationRequest intent, coded elements
#   and its taints (signals and security labels, from `taints`). Empty when unclassified.
# scope: document
default own_sections(_, _) := set()

own_sections(resource, resource_taints) := union({
	_by_resource_type(resource),
	_by_medication_request_intent(resource),
	_by_coded_element(resource),
	resource_taints,
}) if {
	is_string(resource.resourceType)
	not _unrecognised_code(resource)
}

# METADATA
# title: Sections of a GP-sourced resource
# description: |
#   The sections the resource adds when it is GP-sourced (gp_sourced_resource_types).
#   Empty when unclassified.
# scope: document
default gp_sections(_) := set()

gp_sections(resource) := _by_gp_source(resource, true) if {
	is_string(resource.resourceType)
	not _unrecognised_code(resource)
}

# METADATA
# title: Sensitive sections of any resource
# description: |
#   The sections a resource is tainted with whatever its type: sensitive signals in any
#   coding and security labels. Used for the resident's Patient and supporting resources.
taints(resource, nodes) := signals(nodes) | label_sections(resource)

# A type in recognised_code_required without a recognised coding there is unclassified.
_unrecognised_code(resource) if {
	required := classification.recognised_code_required[resource.resourceType]
	not _has_recognised(object.get(resource, required.path, null), {system | some system in required.systems})
}

_has_recognised(value, systems) if {
	some coding in _codings(value)
	recognised(coding)
	alias(coding) in systems
}

# METADATA
# title: Sensitive signals
# description: |
#   Sections named by any coding anywhere in the walked nodes (data signals and
#   signal_prefixes): a mental-disorder code in reasonCode, an extension, a nested
#   element counts like one in Condition.code.
signals(nodes) := {section |
	some node in nodes
	code := node.code
	is_string(code)
	some section, _ in _indexes.signals[alias(node)][trim_space(code)]
} | {section |
	some node in nodes
	is_string(node.code)
	system_alias := alias(node)
	_prefix_aliases[system_alias]
	some section in _prefix_sections(system_alias, replace(upper(trim_space(node.code)), ".", ""))
}

# Aliases that have code prefixes (ICD-10): only their codings are compared by prefix.
# regal ignore:prefer-set-or-object-rule
_prefix_aliases := {system_alias: true |
	some by_alias in classification.signal_prefixes
	some system_alias, _ in by_alias
}

_prefix_sections(system_alias, code) := {section |
	some section, by_alias in classification.signal_prefixes
	some prefix in by_alias[system_alias]
	startswith(code, prefix)
}

# METADATA
# title: Security labels
# description: meta.security and securityLabel codings of a resource.
labels(resource) := array.concat(
	_as_list(object.get(resource, ["meta", "security"], null)),
	_codings(object.get(resource, "securityLabel", null)),
)

# METADATA
# title: Sections of security labels
# description: The sections the resource's security labels map to.
label_sections(resource) := {section |
	some label in labels(resource)
	some section in _label_matches(label)
}

# METADATA
# title: Unreadable resource
# scope: document
# description: |
#   True when the resource carries a security label the policy neither maps to a section
#   nor lists as ordinary, or a modifierExtension it does not know: withheld from everyone.
unreadable(resource, _) if {
	some label in labels(resource)
	not _label_known(label)
}

unreadable(_, nodes) if {
	some node in nodes
	some extension in node.modifierExtension
	not extension.url in classification.known_modifier_extensions
}

# Shapes R4 does not allow, where a label or a part could hide: read as unreadable.
unreadable(resource, _) if not is_object(object.get(resource, "meta", {}))

unreadable(resource, _) if not is_array(object.get(resource, ["meta", "security"], []))

unreadable(resource, _) if not is_array(object.get(resource, "securityLabel", []))

unreadable(resource, _) if not is_array(object.get(resource, "modifierExtension", []))

# A part is read without its contained resources; one that still holds some is a
# contained resource holding others, which R4 forbids.
unreadable(resource, _) if "contained" in object.keys(resource)

_label_matches(label) := {section |
	code := upper(trim_space(label.code))
	some system_alias in _label_aliases(label)
	some section, by_alias in classification.security_labels
	code in by_alias[system_alias]
}

# A label without a system is compared with every table.
_label_aliases(label) := {alias(label)} if is_string(label.system)

_label_aliases(label) := object.keys(classification.systems) if not label.system

_label_known(label) if count(_label_matches(label)) > 0

_label_known(label) if {
	code := upper(trim_space(label.code))
	some system_alias in _label_aliases(label)
	code in classification.ordinary_security_labels[system_alias]
}

# METADATA
# title: Primary section
# description: |
#   The section a resource is counted under: the first of its sections in the
#   precedence list (most restrictive first). Sections missing from the list come
#   after it, alphabetically. Undefined for an empty set.
primary(sections) := ranked[0][1] if {
	ranked := sort([[rank, section] | some section in sections; rank := _rank[section]])
	count(ranked) > 0
} else := min(sections)

# Section -> its place in the precedence list (complete rule: built once per query).
# regal ignore:prefer-set-or-object-rule
_rank := {section: i | some i, section in classification.precedence}

# By resource type alone (Flag -> alerts, Condition -> diagnoses, ...).
_by_resource_type(resource) := {section | some section in _resource_type_index[resource.resourceType]}

# MedicationRequest by intent (orders -> issued_medications, plans and options -> medications).
_by_medication_request_intent(resource) := {section |
	resource.resourceType == "MedicationRequest"
	some section, intents in classification.medication_request_intents
	resource.intent in intents
}

# By codes in the elements listed in _coded_elements for the resource's type.
_by_coded_element(resource) := {section |
	some element in _coded_elements[resource.resourceType]
	some section in _lookup(_codings(object.get(resource, element.path, null)), _indexes[element.table])
}

_by_gp_source(resource, true) := {section |
	some section, types in classification.gp_sourced_resource_types
	_type_listed(resource.resourceType, types)
}

_by_gp_source(_, false) := set()

# Where codes are read from, per resource type: the element's path and the table of
# data.lcr.classification that its codes are looked up in.
_coded_elements := {
	"DocumentReference": [
		{"path": ["type"], "table": "document_types"},
		{"path": ["context", "practiceSetting"], "table": "care_settings"},
	],
	"Composition": [
		{"path": ["type"], "table": "document_types"},
		{"path": ["category"], "table": "care_settings"},
	],
	"Encounter": [
		{"path": ["serviceType"], "table": "care_settings"},
		{"path": ["type"], "table": "care_settings"},
	],
	"Appointment": [
		{"path": ["serviceType"], "table": "care_settings"},
		{"path": ["specialty"], "table": "care_settings"},
	],
	"EpisodeOfCare": [{"path": ["type"], "table": "care_settings"}],
	"Condition": [{"path": ["code"], "table": "condition_codes"}],
	"Procedure": [{"path": ["code"], "table": "procedure_codes"}],
	"DiagnosticReport": [
		{"path": ["code"], "table": "diagnostic_report_codes"},
		{"path": ["category"], "table": "diagnostic_report_categories"},
	],
	"Observation": [{"path": ["category"], "table": "observation_categories"}],
	"CarePlan": [{"path": ["category"], "table": "care_plan_categories"}],
}

# Resource type -> the sections it matches by type alone.
# regal ignore:prefer-set-or-object-rule
_resource_type_index := {resource_type: sections |
	some types in classification.resource_types
	some resource_type in types
	sections := {section | some section, listed in classification.resource_types; resource_type in listed}
}

# The coded tables of data.lcr.classification, each inverted once per query into
# {alias: {code: {section: true}}} so that a coding costs one lookup; built in one pass
# (object.union_n merges the sections of a code listed under several).
_coded_tables := {
	"document_types", "care_settings", "condition_codes", "signals",
	"care_plan_categories", "procedure_codes", "diagnostic_report_codes",
	"diagnostic_report_categories", "observation_categories",
}

# A partial object rule would be evaluated again on every lookup by key.
# regal ignore:prefer-set-or-object-rule
_indexes := {name: _index(object.get(classification, name, {})) | some name in _coded_tables}

_index(table) := object.union_n([{system_alias: {code: {section: true}}} |
	some section, by_alias in table
	some system_alias, codes in by_alias
	some code in codes
])

_lookup(codings, index) := {section |
	some coding in codings
	some section, _ in index[alias(coding)][trim_space(coding.code)]
}

# Codings of a CodeableConcept or of a list of them.
_codings(value) := [coding | some concept in _as_list(value); some coding in concept.coding]

default _as_list(_) := []

_as_list(value) := value if is_array(value)

_as_list(value) := [value] if is_object(value)

_type_listed(_, types) if "*" in types

_type_listed(resource_type, types) if resource_type in types

# METADATA
# title: GP practice
# description: An Organization whose type carries an ODS GP-practice role in either ODS role system.
gp_practice(org) if {
	org.resourceType == "Organization"
	some coding in _codings(org.type)
	upper(trim_space(coding.code)) in object.get(classification.gp_practice_roles, alias(coding), [])
}

# METADATA
# title: GP source by meta.source
# description: meta.source starts with a GP prefix, scheme and host compared case-insensitively.
gp_meta_source(resource) if {
	source := resource.meta.source
	is_string(source)
	some prefix in classification.gp_source_prefixes
	_same_origin_prefix(trim_space(source), prefix)
}

_same_origin_prefix(source, prefix) if {
	origin := _origin(prefix)
	lower(substring(source, 0, count(origin))) == origin
	startswith(substring(source, count(origin), -1), substring(prefix, count(origin), -1))
}

# "https://Host.Example/path" -> "https://host.example" (lower case).
_origin(url) := lower(concat("/", array.slice(split(url, "/"), 0, 3)))
