"""Controllers tipd speaks to: bridges between a real controller and wire protocol v1."""
