"""The engine: decides what runs when; the store persists, the API observes."""
