"""Tests of the app-server steps and the fleet's git origin."""
