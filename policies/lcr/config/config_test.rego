package lcr.config_test

import data.lcr.classification
import data.lcr.config

_admin := {"alerts", "appointments", "visits_encounters"}

_senior := {
	"discharge_summaries", "alerts", "allergies", "appointments", "social_care", "diagnoses",
	"family_history", "issued_medications", "lab_results", "letters", "maternity", "medications",
	"care_plans", "procedures", "progress_notes", "referrals", "social_history", "visits_encounters",
	"vital_signs",
}

_registered_manager_extra := {
	"gp_records", "additional_gp_reports", "clinical_document_reports", "community_information",
	"clinical_correspondence", "endoscopy", "mental_health",
}

test_access_levels_match_seed_table if {
	object.keys(config.access_levels) == {"no_access", "admin", "senior_carer", "registered_manager"}
	config.access_levels.no_access == []
	{section | some section in config.access_levels.admin} == _admin
	{section | some section in config.access_levels.senior_carer} == _senior
	{section | some section in config.access_levels.registered_manager} == _senior | _registered_manager_extra
}

# The access decision reads each level's list as the set of its sections.
test_access_levels_list_each_section_once if {
	every sections in config.access_levels {
		is_array(sections)
		count(sections) == count({section | some section in sections})
	}
}

test_access_levels_sections_are_classified if {
	every sections in config.access_levels {
		every section in sections {
			section in classification.precedence
		}
	}
}

test_care_services_demo if {
	config.care_services.VM101 == {
		"name": "Rosewood House", "type": "residential_care_home",
		"lcr_enabled": true, "icb": "QKK",
	}
	config.care_services.VM102 == {
		"name": "Thames View", "type": "residential_care_home",
		"lcr_enabled": true, "icb": "QMF",
	}
	config.care_services.VM201 == {
		"name": "Elm Court Nursing Home", "type": "nursing_home",
		"lcr_enabled": true, "icb": "QKK",
	}
	config.care_services.VM301 == {
		"name": "Birch Lodge", "type": "residential_care_home",
		"lcr_enabled": false, "icb": "QWE",
	}
	config.care_services.VM401 == {
		"name": "Kent Oaks", "type": "residential_care_home",
		"lcr_enabled": true, "icb": "QKS",
	}
}

test_care_services_have_every_field if {
	every service in config.care_services {
		object.keys(service) == {"name", "type", "lcr_enabled", "icb"}
		is_boolean(service.lcr_enabled)
	}
}

test_london_icbs_are_the_five if {
	config.london_icbs == {
		"QMJ": "North Central London",
		"QMF": "North East London",
		"QKK": "South East London",
		"QRV": "North West London",
		"QWE": "South West London",
	}
}

test_requests_and_actions if {
	config.permitted_reasons_for_request == ["directcare"]
	config.actions == ["record.read", "menu.read", "audit.read"]
}

test_audit_trail_readers if {
	config.audit_trail.roles == {"auditor": "all"}
	config.audit_trail.access_levels == {"registered_manager": "own_care_service"}
}
