"""The emotion story corpus: concepts, stories, neutral passages, validation and generation."""
