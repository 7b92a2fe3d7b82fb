"""Retrieval jobs (Lambda ``retrieval_worker``): plan over the index, scan each archive, write matches."""
