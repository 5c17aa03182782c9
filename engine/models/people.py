"""People tables (issue 4): users, roles, teams, absences, assignment pointers and explanations."""
