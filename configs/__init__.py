"""Model configs (official goombalab JSONs, unchanged) and training presets, as package data."""
