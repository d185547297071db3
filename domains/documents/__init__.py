"""The documents domain: people in collaborative documents."""
