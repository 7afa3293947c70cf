import { jsonValueOf, jsonValueResponse } from './json-value';

describe('jsonValueResponse / jsonValueOf', () => {
  it('stores JSON and gives back the parsed JSON (Dates as ISO strings) by default', () => {
    const value = { at: new Date(0), n: 1, list: [new Date(1)] };
    expect(jsonValueOf(jsonValueResponse(value))).toEqual({
      at: '1970-01-01T00:00:00.000Z',
      n: 1,
      list: ['1970-01-01T00:00:00.001Z'],
    });
  });

  it('keepDates: Dates come back as Dates, wherever they sit; the JSON text is unchanged', () => {
    const value = {
      at: new Date(0),
      nested: { list: [{ when: new Date(5) }, 'not a date', new Date(7)], text: '1970-01-01T00:00:00.000Z' },
      shared: null as unknown,
    };
    const shared = { d: new Date(9) };
    value.shared = [shared, shared];
    const response = jsonValueResponse(value, { keepDates: true });
    expect(response.text()).toBe(JSON.stringify(value));
    const back = jsonValueOf(response) as typeof value;
    expect(back).toEqual({
      at: new Date(0),
      nested: { list: [{ when: new Date(5) }, 'not a date', new Date(7)], text: '1970-01-01T00:00:00.000Z' },
      shared: [{ d: new Date(9) }, { d: new Date(9) }],
    });
    expect(back.at).toBeInstanceOf(Date);
    expect(back.nested.text).toBe('1970-01-01T00:00:00.000Z');
  });

  it('keepDates: a Date at the top, an invalid Date (null in JSON), keys with dots and slashes', () => {
    expect(jsonValueOf(jsonValueResponse(new Date(3), { keepDates: true }))).toEqual(new Date(3));
    expect(jsonValueOf(jsonValueResponse({ bad: new Date(NaN) }, { keepDates: true }))).toEqual({ bad: null });
    expect(jsonValueOf(jsonValueResponse({ 'a.b/c': { '': new Date(4) } }, { keepDates: true }))).toEqual({
      'a.b/c': { '': new Date(4) },
    });
  });

  it('a value without Dates stores no date list', () => {
    expect(Object.keys(jsonValueResponse({ a: 1 }, { keepDates: true }).metadata)).toEqual([':value']);
  });
});
