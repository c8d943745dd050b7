"""The prompts of the tiny embedded model the model tests share (three digit classes)."""
NAMES = ["zero", "one", "two"]
PROMPTS = [f"a photo of a {n}." for n in NAMES]
WORDS = ["a", "photo", "of", "."] + NAMES
