package lcr.classification_test

import data.lcr.classification

# Tables keyed by section, then code-system alias, then codes.
_coded_tables := {
	"document_types", "care_settings", "security_labels", "condition_codes", "signals", "signal_prefixes",
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
	classification.gp_practice_roles == {"org_role": ["RO76", "76"], "ods_role": ["RO76"]}
	"https://fhir.nhs.uk/CodeSystem/organisation-role" in classification.systems.org_role
	classification.gp_source_prefixes == ["https://gp.lcr.example/"]
}

test_every_system_spelling_names_one_alias if {
	spellings := [lower(spelling) | some spellings in classification.systems; some spelling in spellings]
	count(spellings) == count({spelling | some spelling in spellings})
}

test_mental_health_value_set_holds_the_seed_codes if {
	every code in ["74732009", "35489007", "58214004", "197480006", "13746004", "370143000"] {
		code in classification.signals.mental_health.sct
	}
	"F" in classification.signal_prefixes.mental_health.icd10
}

test_every_intent_has_a_section if {
	intents := {intent | some intents in classification.medication_request_intents; some intent in intents}
	intents == {
		"proposal", "plan", "directive", "order", "original-order",
		"reflex-order", "filler-order", "instance-order", "option",
	}
}

test_unmapped_labels_are_not_ordinary if {
	every code in ["V", "R"] {
		not code in classification.ordinary_security_labels.confidentiality
	}
}
