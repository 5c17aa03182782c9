"""Customer tables (issue 3): customers with tier and group hierarchy, contacts, tier history."""
