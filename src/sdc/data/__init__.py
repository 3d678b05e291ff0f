"""Finding, reading and splitting the Free Spoken Digit Dataset, and synthetic voices."""
