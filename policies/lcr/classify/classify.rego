# METADATA
# title: Section classification of FHIR R4 resources
# description: |
#   Which LCR sections a FHIR resource belongs to, and which of them it is counted
#   under. The code lists live in data.lcr.classification (docs/sections.md is the
#   human-readable contract); this package only knows where in a resource to look.
package lcr.classify

import data.lcr.classification

# METADATA
# title: GP organization index
# description: |
#   Organization id -> true when that Organization (in this record) has a GP-practice
#   role in its type, false otherwise. Build it once per record and pass it to
#   sections_of. An id used by both a GP practice and another Organization is a GP.
org_index(resources) := {org.id: is_gp |
	some org in organizations
	is_gp := org.id in gp_ids
} if {
	organizations := [resource | some resource in resources; resource.resourceType == "Organization"]
	gp_ids := {org.id | some org in organizations; _gp_practice(org)}
}

# METADATA
# title: Sections of a resource
# description: |
#   The set of every section the resource matches (empty when unclassified).
#   org_index comes from org_index(resources).
# scope: document
default sections_of(_, _) := set()

sections_of(resource, org_index) := union({
	_by_resource_type(resource),
	_by_medication_request_intent(resource),
	_by_coded_element(resource),
	_by_security_label(resource),
	_by_gp_source(resource, org_index),
}) if {
	is_string(resource.resourceType)
	not resource.resourceType in classification.unclassified_resource_types
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

# Selectors. Each returns the set of sections the resource matches in one way.

# By resource type alone (Flag -> alerts, Condition -> diagnoses, ...).
_by_resource_type(resource) := {section | some section in _resource_type_index[resource.resourceType]}

# MedicationRequest by intent (order -> issued_medications, plan -> medications).
_by_medication_request_intent(resource) := {section |
	resource.resourceType == "MedicationRequest"
	some section, intents in classification.medication_request_intents
	resource.intent in intents
}

# By codes in the elements listed in _coded_elements for the resource's type: document
# type, care setting, Condition/Procedure/DiagnosticReport code, categories.
_by_coded_element(resource) := {section |
	some element in _coded_elements[resource.resourceType]
	some section in _coded(resource, element.path, element.table)
}

# By mental-health (or other) security labels, on any resource type.
_by_security_label(resource) := {section |
	labels := array.concat(
		_as_list(object.get(resource, ["meta", "security"], null)),
		_codings(object.get(resource, "securityLabel", null)),
	)
	some section in _lookup(labels, _indexes.security_labels)
}

# GP-sourced: gp_records for any resource type, additional_gp_reports for documents.
_by_gp_source(resource, org_index) := {section |
	_gp_sourced(resource, org_index)
	some section, types in classification.gp_sourced_resource_types
	_type_listed(resource.resourceType, types)
}

# Where codes are read from, per resource type: the element's path and the table of
# data.lcr.classification that its codes are looked up in. "Document type" and "care
# setting" are as defined in docs/sections.md.
_coded_elements := {
	"DocumentReference": [
		{"path": ["type"], "table": "document_types"},
		{"path": ["context", "practiceSetting"], "table": "care_settings"},
	],
	"Composition": [
		{"path": ["type"], "table": "document_types"},
		{"path": ["category"], "table": "care_settings"},
	],
	"Encounter": [{"path": ["serviceType"], "table": "care_settings"}],
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

# Resource type -> the sections it matches by type alone. Complete rules (not partial
# ones) so each index is built once per query and then only looked up.
# regal ignore:prefer-set-or-object-rule
_resource_type_index := {resource_type: sections |
	some types in classification.resource_types
	some resource_type in types
	sections := {section | some section, listed in classification.resource_types; resource_type in listed}
}

# The coded tables of data.lcr.classification, each inverted once per query into
# {system URI: {code: {section}}} so that a resource costs one lookup per coding.
_coded_tables := {
	"document_types", "care_settings", "security_labels", "condition_codes",
	"care_plan_categories", "procedure_codes", "diagnostic_report_codes",
	"diagnostic_report_categories", "observation_categories",
}

# A partial object rule would be evaluated again on every lookup by key.
# regal ignore:prefer-set-or-object-rule
_indexes := {name: _index(classification[name], classification.systems) | some name in _coded_tables}

_index(table, systems) := {system_uri: by_code |
	some alias, system_uri in systems
	by_code := {code: {section | some section, by_alias in table; code in by_alias[alias]} |
		some by_alias in table
		some code in by_alias[alias]
	}
}

# Sections of the codings at path in resource, looked up in the named table.
_coded(resource, path, table) := _lookup(_codings(object.get(resource, path, null)), _indexes[table])

_lookup(codings, index) := {section |
	some coding in codings
	some section in index[coding.system][coding.code]
}

# Codings of a CodeableConcept or of a list of them.
_codings(value) := [coding | some concept in _as_list(value); some coding in concept.coding]

default _as_list(_) := []

_as_list(value) := value if is_array(value)

_as_list(value) := [value] if is_object(value)

_type_listed(_, types) if "*" in types

_type_listed(resource_type, types) if resource_type in types

_gp_practice(org) if {
	some coding in _codings(org.type)
	some alias, codes in classification.gp_practice_roles
	coding.system == classification.systems[alias]
	coding.code in codes
}

_gp_sourced(resource, _) if {
	source := resource.meta.source
	is_string(source)
	some prefix in classification.gp_source_prefixes
	startswith(source, prefix)
}

_gp_sourced(resource, org_index) if {
	some id in _referenced_organizations(resource)
	org_index[id] == true
}

# Organization ids referenced from the resource's source fields. A field holds a
# Reference, a list of them, or (Procedure.performer) a list of {actor: Reference}.
_referenced_organizations(resource) := {id |
	some field in classification.gp_reference_fields
	some element in _as_list(resource[field])
	some path in [["reference"], ["actor", "reference"]]
	reference := object.get(element, path, null)
	is_string(reference)
	contains(reference, "Organization/") # most references are to people: skip the split
	some id in _organization_ids(reference)
}

# "Organization/gp1", "Organization/gp1/_history/2", "https://host/fhir/Organization/gp1".
_organization_ids(reference) := {parts[i + 1] |
	parts := split(reference, "/")
	some i, part in parts
	part == "Organization"
}
