"""Small pure helpers shared by every package."""
