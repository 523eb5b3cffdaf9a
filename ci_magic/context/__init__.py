"""What describes the user's data to the model: the only data that leaves the machine."""
