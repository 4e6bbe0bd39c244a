"""The project's bottom layer: errors, value checks and safe file writing. It imports nothing
from the rest of the project, so every other package may import it."""
