"""SQLite storage: schema, migrations, quota ledger, generations. All SQL of the project lives here."""
