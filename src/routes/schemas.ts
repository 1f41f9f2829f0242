import { Type } from 'typebox';

export const ErrorBody = Type.Object(
  {
    type: Type.String({
      description: 'Error category, e.g. "Validation error", "Kentik API error"',
    }),
    loc: Type.Array(Type.Union([Type.String(), Type.Integer()]), {
      description: 'Where the problem is, e.g. ["body", "ttl"] or ["upstream"]',
    }),
    msg: Type.String({ description: 'What went wrong and what to do about it' }),
  },
  { $id: 'ErrorBody', description: 'Every error answer has this shape' },
);

export const errorResponse = (description: string) => ({ ...Type.Ref('ErrorBody'), description });
