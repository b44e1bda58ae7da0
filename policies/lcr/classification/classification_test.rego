package lcr.classification_test

import data.lcr.classification

# Tables keyed by section, then code-system alias, then codes.
_coded_tables := {
	"document_types", "care_settings", "security_labels", "condition_codes",
	"care_plan_categories", "procedure_codes", "diagnostic_report_codes",
	"diagnostic_report_categories", "observation_categories",
}

# Tables keyed by section whose values are plain lists.
_listed_tables := {"resource_types", "medication_request_intents", "gp_sourced_resource_types"}

test_precedence_lists_26_sections_once if {
	count(classification.precedence) == 26
	count({section | some section in classification.precedence}) == 26
}

test_precedence_most_restrictive_first if {
	array.slice(classification.precedence, 0, 4) == ["mental_health", "endoscopy", "additional_gp_reports", "gp_records"]
	array.slice(classification.precedence, 23, 26) == ["alerts", "appointments", "visits_encounters"]
}

test_tables_name_known_sections if {
	every name in _coded_tables | _listed_tables {
		every section, _ in classification[name] {
			section in classification.precedence
		}
	}
}

test_coded_tables_use_known_systems_and_string_codes if {
	every name in _coded_tables {
		every by_alias in classification[name] {
			every alias, codes in by_alias {
				classification.systems[alias]
				every code in codes {
					is_string(code)
				}
			}
		}
	}
}

test_gp_sources if {
	classification.gp_practice_roles == {"org_role": ["RO76"]}
	classification.systems.org_role == "https://fhir.nhs.uk/CodeSystem/organisation-role"
	classification.gp_source_prefixes == ["https://gp.lcr.example/"]
}
