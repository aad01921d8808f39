"""The Salesforce Pub/Sub API: the project's .proto and the modules generated from it."""
