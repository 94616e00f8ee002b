"""Helpers shared by the test suites (fixtures are opted into per module, see moto_server)."""
