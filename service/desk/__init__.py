"""The human-agent desk: skill-group queues and routing (core), agents' logins and roles (auth), business hours,
the event bus that feeds consoles in real time, and the client that hands a conversation back to the bot."""
