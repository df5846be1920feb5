"""Text analysis shared by the knowledge base and memory: language detection, keyword terms
(Porter-stemmed English, CJK unigrams and bigrams) and, later, entity spotting. Pure functions,
no I/O."""
