"""Operations: read state through the edges, ask the core what to do, apply it."""
