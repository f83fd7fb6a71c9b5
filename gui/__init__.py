"""Drawing apps (Tkinter and web) that recognise digits a person draws."""
